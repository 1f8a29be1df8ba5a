import { DemandForecast } from '../core/forecast.ts'
import type { TaskConfig } from '../core/task.ts'

/** Figures of one task's warm pool (for /metrics). */
export interface PoolStats {
  task: string
  kind: 'module' | 'ndjson'
  /** Workers alive now (threads or processes). */
  size: number
  busy: number
  warmHits: number
  coldStarts: number
  /** Workers the forecast wants ready now, and fragments per second it sees. */
  forecast: number
  ratePerSecond: number
}

/**
 * The bookkeeping of one task's warm pool, whatever its workers are: its bounds (`minWarm`, 1 by
 * default, and `maxWarm`, the daemon's capacity by default), the forecast of its demand, and
 * what the fragments found (a warm worker, or none: a cold start).
 */
export class PoolAccount {
  readonly name: string
  readonly task: TaskConfig
  readonly min: number
  readonly max: number
  readonly forecast = new DemandForecast()
  busy = 0
  warmHits = 0
  coldStarts = 0

  constructor(name: string, task: TaskConfig, capacity: number) {
    this.name = name
    this.task = task
    this.max = Math.max(1, task.maxWarm ?? capacity)
    this.min = Math.min(this.max, task.minWarm ?? 1)
  }

  /** A fragment starts, on a warm worker or not. */
  started(warm: boolean, nowMs: number): void {
    this.forecast.arrived(nowMs)
    if (warm) this.warmHits++
    else this.coldStarts++
    this.busy++
  }

  ended(ranMs: number): void {
    this.busy--
    this.forecast.ran(ranMs)
  }

  /** Workers the forecast wants ready now. */
  target(nowMs: number): number {
    return this.forecast.target(nowMs, this.min, this.max)
  }

  stats(kind: PoolStats['kind'], size: number, nowMs: number): PoolStats {
    return {
      task: this.name,
      kind,
      size,
      busy: this.busy,
      warmHits: this.warmHits,
      coldStarts: this.coldStarts,
      forecast: this.target(nowMs),
      ratePerSecond: this.forecast.ratePerSecond(nowMs)
    }
  }
}
