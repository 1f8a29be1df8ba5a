import { SCHEDULE_LEAD_MS } from '../core/forecast.ts'
import { nextTick } from '../core/schedule.ts'
import { itemCountOf } from '../core/spec.ts'
import type { ShoalNode } from '../engine/node.ts'
import type { TaskRouter } from '../worker/router.ts'

/** How often the forecasts are fed. */
const EVERY_MS = 1000

/**
 * Feeds the warm pools' demand forecasts from the replicated state: the schedules whose next
 * tick is due within SCHEDULE_LEAD_MS bring their fragments (this daemon's share: the tick's
 * fragments over the daemons that claim), and a pool with no history of its own takes the mesh's
 * mean run time of its task from the task metrics (`shoal_run_seconds`). The forecast then has
 * the pool warm before the tick.
 */
export class ForecastFeed {
  private readonly node: ShoalNode
  private readonly runner: TaskRouter
  private timer: NodeJS.Timeout | undefined

  constructor(node: ShoalNode, runner: TaskRouter) {
    this.node = node
    this.runner = runner
  }

  start(): void {
    this.timer = setInterval(() => this.feed(), EVERY_MS)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  feed(): void {
    if (!this.node.ready) return
    const wall = Date.now()
    const mono = performance.now()
    const state = this.node.replica.state
    const claimers = Math.max(1, this.node.mesh.claimers().length)
    for (const reg of state.schedules.values()) {
      if (reg.deleted || reg.paused) continue
      const forecast = this.runner.forecast(reg.spec.template.task)
      if (forecast === undefined) continue
      const tick = nextTick(reg.spec, wall)
      if (tick === null || tick - wall > SCHEDULE_LEAD_MS) continue
      const t = reg.spec.template
      const fragments = Math.ceil(itemCountOf(t) / Math.max(1, t.fragmentSize ?? 1))
      forecast.expect(`${reg.id}@${tick}`, mono + (tick - wall), Math.ceil(fragments / claimers))
    }
    // Run-time history of the whole mesh, for pools that have none of their own yet (once every
    // pool has run, nothing to scan).
    const needing = new Set(
      this.runner
        .pools()
        .map((p) => p.task)
        .filter((t) => this.runner.forecast(t)?.hasHistory === false)
    )
    if (needing.size === 0) return
    const sums = new Map<string, { sum: number; count: number }>()
    for (const byPeer of state.metrics.values()) {
      for (const reg of byPeer.values()) {
        for (const s of reg.series) {
          if (s.name !== 'shoal_run_seconds' || !needing.has(s.task)) continue
          const acc = sums.get(s.task) ?? { sum: 0, count: 0 }
          acc.sum += s.sum
          acc.count += s.count
          sums.set(s.task, acc)
        }
      }
    }
    for (const [task, { sum, count }] of sums) {
      const forecast = this.runner.forecast(task)
      if (forecast !== undefined && !forecast.hasHistory && count > 0) forecast.seed((sum / count) * 1000)
    }
  }
}
