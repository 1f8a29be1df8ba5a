import {
  aggregateJob,
  fitSketches,
  type JobMetric,
  METRIC_LIMITS,
  type MetricBatch,
  type MetricRegister,
  OWN_PREFIX,
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

/** A recorded try's values, held until it is judged. */
interface Held {
  at: number
  jobId: string
  task: string
  batches: readonly MetricBatch[]
  dropped: number
  counts?: () => boolean
}

/** A job's series keys known here (in this daemon's register or pending), and how many are the task's. */
interface Known {
  keys: Set<string>
  task: number
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
  private readonly known = new Map<string, Known>()
  /** The last answer per job, with the registers it was made from (the same objects: unchanged). */
  private readonly answers = new Map<
    string,
    { from: MetricRegister[]; answer: ReturnType<typeof aggregateJob> }
  >()
  /** Tries not yet judged (see add), oldest first. */
  private readonly held: Held[] = []
  private readonly holdMs: number
  private timer: Cancel | undefined
  private stopped = false
  /** Values dropped here since start (bad lines, limits): for /metrics. */
  droppedTotal = 0
  /** Tries whose values did not count: another run of the same fragment won. */
  superseded = 0

  constructor(flushMs: number, components: MetricsKeeperComponents, holdMs = Math.max(flushMs, 1000)) {
    this.flushMs = flushMs
    this.holdMs = holdMs
    this.c = components
  }

  add(
    jobId: string,
    task: string,
    batches: readonly MetricBatch[],
    dropped: number,
    counts?: () => boolean
  ): void {
    if (this.stopped) return
    // Held a moment before they count: a competing result of the same fragment may be on its way.
    this.held.push({ at: this.c.clock.now(), jobId, task, batches, dropped, ...(counts ? { counts } : {}) })
    this.timer ??= this.c.clock.after(this.flushMs, () => this.flush())
  }

  /** Fold the held tries old enough to be judged: those still their fragment's count. */
  private settle(all: boolean): void {
    const now = this.c.clock.now()
    let keep = 0
    for (const t of this.held) {
      if (!all && now - t.at < this.holdMs) {
        this.held[keep++] = t
        continue
      }
      if (t.counts === undefined || t.counts()) this.fold(t.jobId, t.task, t.batches, t.dropped)
      else this.superseded++
    }
    this.held.length = keep
  }

  private fold(jobId: string, task: string, batches: readonly MetricBatch[], dropped: number): void {
    let p = this.pending.get(jobId)
    if (p === undefined) {
      p = { series: new Map(), dropped: 0 }
      this.pending.set(jobId, p)
    }
    let lost = dropped
    const known = this.knownOf(jobId)
    for (const b of batches) {
      const key = seriesKey(task, b.name, b.labels)
      let agg = p.series.get(key)
      if (agg === undefined) {
        // A bounded number of task series per job and daemon: a task that makes up label values
        // cannot grow the register without end. Shoal's own few series always have room.
        const own = b.name.startsWith(OWN_PREFIX)
        if (!known.keys.has(key)) {
          if (!own && known.task >= METRIC_LIMITS.seriesPerRegister) {
            lost += b.values.length
            continue
          }
          known.keys.add(key)
          if (!own) known.task++
        }
        agg = new SeriesAggregate(task, b.name, b.labels ?? {})
        p.series.set(key, agg)
      }
      for (const v of b.values) if (!agg.add(v)) lost++
    }
    p.dropped += lost
    this.droppedTotal += lost
  }

  /** The job's metrics over every daemon (what has been flushed, here and elsewhere). */
  jobMetrics(jobId: string): { metrics: JobMetric[]; dropped: number } {
    const from = [...(this.c.replica.state.metrics.get(jobId)?.values() ?? [])]
    const last = this.answers.get(jobId)
    if (last !== undefined && last.from.length === from.length && last.from.every((r, i) => r === from[i]))
      return last.answer
    const answer = aggregateJob(from)
    this.answers.set(jobId, { from, answer })
    if (this.answers.size > MAX_ANSWERS) this.answers.delete(this.answers.keys().next().value as string)
    return answer
  }

  /**
   * Write every job's pending aggregates into this daemon's registers, one write per job (`all`:
   * the held tries too, however recent: at stop).
   */
  flush(all = false): void {
    this.timer = undefined
    this.settle(all)
    if (this.held.length > 0) this.timer = this.c.clock.after(this.flushMs, () => this.flush())
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
        series: fitSketches([...merged.values()]),
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
    this.flush(true)
    this.timer?.()
    this.stopped = true
  }

  private ownRegister(jobId: string): MetricRegister | undefined {
    return this.c.replica.state.metrics.get(jobId)?.get(this.c.mesh.peerId)
  }

  private knownOf(jobId: string): Known {
    let k = this.known.get(jobId)
    if (k === undefined) {
      // The series in this daemon's register, and those pending for it (this entry may have been
      // evicted since they were counted: without them the limit would let 64 more in).
      const names = new Map<string, string>()
      for (const s of this.ownRegister(jobId)?.series ?? [])
        names.set(seriesKey(s.task, s.name, s.labels), s.name)
      for (const [key, agg] of this.pending.get(jobId)?.series ?? []) names.set(key, agg.name)
      k = {
        keys: new Set(names.keys()),
        task: [...names.values()].filter((name) => !name.startsWith(OWN_PREFIX)).length
      }
      this.known.set(jobId, k)
      if (this.known.size > MAX_ANSWERS) this.known.delete(this.known.keys().next().value as string)
    }
    return k
  }
}

/** Jobs whose answer (and known series) are kept between queries. */
const MAX_ANSWERS = 1024
