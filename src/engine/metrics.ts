import {
  aggregateJob,
  type JobMetric,
  METRIC_LIMITS,
  type MetricBatch,
  type MetricRegister,
  SeriesAggregate,
  seriesKey
} from '../core/metrics.ts'
import type { Cancel, Clock, Log, MetricsSink } from '../core/ports.ts'
import type { Entry } from '../core/state.ts'
import type { Mesh } from '../mesh/mesh.ts'
import type { Replica } from '../store/replica.ts'

export interface MetricsKeeperComponents {
  replica: Replica
  mesh: Pick<Mesh, 'peerId' | 'announce'>
  clock: Clock
  logger: Log
  incarnation: number
}

/** Pending values of one job, by series key. */
interface Pending {
  series: Map<string, SeriesAggregate>
  dropped: number
}

/**
 * Task metrics, aggregated in batches (docs/decisions/017-task-metrics.md): the values of the
 * tries recorded here are folded in memory per (job, task, name, labels), and every
 * `metricsFlushMs` each job's aggregates are merged into this daemon's register of the job
 * (`metric/<job>/<peer>`) and written and gossiped once. Only aggregates travel; any daemon
 * answers for the whole mesh from every daemon's register.
 */
export class MetricsKeeper implements MetricsSink {
  private readonly c: MetricsKeeperComponents
  private readonly flushMs: number
  private readonly pending = new Map<string, Pending>()
  private timer: Cancel | undefined
  private stopped = false
  /** Values dropped here since start (bad lines, limits): for /metrics. */
  droppedTotal = 0

  constructor(flushMs: number, components: MetricsKeeperComponents) {
    this.flushMs = flushMs
    this.c = components
  }

  add(jobId: string, task: string, batches: readonly MetricBatch[], dropped: number): void {
    if (this.stopped) return
    let p = this.pending.get(jobId)
    if (p === undefined) {
      p = { series: new Map(), dropped: 0 }
      this.pending.set(jobId, p)
    }
    p.dropped += dropped
    this.droppedTotal += dropped
    for (const b of batches) {
      const key = seriesKey(task, b.name, b.labels)
      let agg = p.series.get(key)
      if (agg === undefined) {
        // A bounded number of series per job and daemon: a task that makes up label values
        // cannot grow the register without end.
        const existing = this.ownRegister(jobId)?.series.length ?? 0
        if (existing + p.series.size >= METRIC_LIMITS.seriesPerRegister && !this.hasSeries(jobId, key)) {
          p.dropped += b.values.length
          this.droppedTotal += b.values.length
          continue
        }
        agg = new SeriesAggregate(task, b.name, b.labels ?? {})
        p.series.set(key, agg)
      }
      for (const v of b.values) agg.add(v)
    }
    this.timer ??= this.c.clock.after(this.flushMs, () => this.flush())
  }

  /** The job's metrics over every daemon (what has been flushed, here and elsewhere). */
  jobMetrics(jobId: string): { metrics: JobMetric[]; dropped: number } {
    return aggregateJob(this.c.replica.state.metrics.get(jobId)?.values() ?? [])
  }

  /** Write every job's pending aggregates into this daemon's registers, one write per job. */
  flush(): void {
    this.timer = undefined
    if (this.pending.size === 0) return
    const entries: Entry[] = []
    for (const [jobId, p] of this.pending) {
      const old = this.ownRegister(jobId)
      const merged = new Map<string, SeriesAggregate>()
      for (const s of old?.series ?? [])
        merged.set(seriesKey(s.task, s.name, s.labels), SeriesAggregate.from(s))
      for (const [key, agg] of p.series) {
        const into = merged.get(key)
        if (into === undefined) merged.set(key, agg)
        else into.merge(agg.toSeries())
      }
      const value: MetricRegister = {
        job: jobId,
        peer: this.c.mesh.peerId,
        incarnation: this.c.incarnation,
        seq: old !== undefined && old.incarnation === this.c.incarnation ? old.seq + 1 : 1,
        series: [...merged.values()].map((a) => a.toSeries()),
        dropped: (old?.dropped ?? 0) + p.dropped
      }
      entries.push({ kind: 'metric', job: jobId, peer: this.c.mesh.peerId, value })
    }
    this.pending.clear()
    const changed = this.c.replica.apply(entries, 'local')
    this.c.mesh.announce(entries)
    changed.catch((err: unknown) =>
      this.c.logger.warn({ err: (err as Error).message }, 'cannot persist task metrics; kept in memory')
    )
  }

  /** Flush what is pending and stop taking values. */
  stop(): void {
    this.timer?.()
    this.flush()
    this.stopped = true
  }

  private ownRegister(jobId: string): MetricRegister | undefined {
    return this.c.replica.state.metrics.get(jobId)?.get(this.c.mesh.peerId)
  }

  private hasSeries(jobId: string, key: string): boolean {
    return (this.ownRegister(jobId)?.series ?? []).some((s) => seriesKey(s.task, s.name, s.labels) === key)
  }
}
