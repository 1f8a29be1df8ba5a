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
  /** Fragments schedules bring now (a tick due within seconds), this daemon's share. */
  scheduled: number
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
      ratePerSecond: this.forecast.ratePerSecond(nowMs),
      scheduled: this.forecast.scheduled(nowMs)
    }
  }
}

/**
 * Fragments waiting for a worker, first come first served: each is handed the next one that
 * comes free, unless its signal aborts or its wait runs past `timeoutMs` first (then it leaves
 * the queue). Shared by the module and the persistent-worker runners.
 */
export class WaitQueue<T> {
  private readonly waiting: Array<(v: T) => void> = []

  wait(signal: AbortSignal | undefined, timeoutMs: number): Promise<{ got: T } | 'aborted' | 'timeout'> {
    if (signal?.aborted === true) return Promise.resolve('aborted')
    return new Promise((resolve) => {
      const end = (why: { got: T } | 'aborted' | 'timeout'): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        if (why === 'aborted' || why === 'timeout') {
          const i = this.waiting.indexOf(take)
          if (i >= 0) this.waiting.splice(i, 1)
        }
        resolve(why)
      }
      const take = (got: T): void => end({ got })
      const onAbort = (): void => end('aborted')
      const timer = setTimeout(() => end('timeout'), Math.max(0, timeoutMs))
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiting.push(take)
    })
  }

  /** Hand `v` to the first fragment waiting; false when none waits. */
  handOff(v: T): boolean {
    const next = this.waiting.shift()
    next?.(v)
    return next !== undefined
  }
}
