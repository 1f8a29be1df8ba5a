import { DDSketch, LogCollapsingLowestDenseDDSketch } from '@datadog/sketches-js'
import { canonical, compareStrings } from './canonical.ts'

/**
 * Task metrics (docs/decisions/017-task-metrics.md): values a task emits while it runs, checked
 * here, aggregated per (job, task, name, labels) by the daemon that ran the try, and replicated
 * only as aggregates: one register per (job, daemon), `metric/<job>/<peer>`, written by that
 * daemon alone. Any daemon answers for the whole mesh by merging every daemon's register of the
 * job. Pure: no clock, no I/O.
 */

/** One value a task emitted. */
export interface MetricSample {
  name: string
  value: number
  labels?: Record<string, string>
}

export const METRIC_LIMITS = {
  /** Longest metric line (a command's fd 3); longer lines are dropped and counted. */
  lineBytes: 4096,
  nameLength: 128,
  labels: 16,
  labelLength: 256,
  /** Most values kept from one try; the rest are dropped and counted. */
  perTry: 100_000,
  /** Most task series in one daemon's register of one job; values of further series are dropped and counted. */
  seriesPerRegister: 64,
  /** Most series in a register on the wire: the task's and Shoal's own (`shoal_…`, a few per result). */
  seriesOnWire: 64 + 16,
  /** Largest encoded sketch accepted from the wire. */
  sketchBytes: 64 * 1024
}

/** Relative accuracy of the quantiles (DDSketch): a quantile is within 1 % of a value seen. */
export const QUANTILE_RELATIVE_ERROR = 0.01
/** Bins before the lowest collapse: values spanning a ratio of 10^17 keep their accuracy. */
const BIN_LIMIT = 2048

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.:]*$/
const LABEL_RE = /^[A-Za-z_][A-Za-z0-9_]*$/

/** A sample as emitted (decoded JSON), checked; or why it is dropped. */
export function checkSample(v: unknown): MetricSample | string {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not an object'
  const o = v as Record<string, unknown>
  if (typeof o.name !== 'string' || o.name.length > METRIC_LIMITS.nameLength || !NAME_RE.test(o.name))
    return 'name: letters, digits, "_", ".", ":", at most 128, not starting with a digit'
  if (typeof o.value !== 'number' || !Number.isFinite(o.value)) return 'value: a finite number'
  if (o.labels === undefined) return { name: o.name, value: o.value }
  if (typeof o.labels !== 'object' || o.labels === null || Array.isArray(o.labels)) return 'labels: an object'
  const entries = Object.entries(o.labels)
  if (entries.length > METRIC_LIMITS.labels) return `labels: at most ${METRIC_LIMITS.labels}`
  const labels: Record<string, string> = {}
  for (const [k, val] of entries) {
    // `__proto__` passes the pattern, but set on a plain object it is no label at all: the value
    // would be counted silently under the other labels only.
    if (!LABEL_RE.test(k) || k.length > METRIC_LIMITS.nameLength || k === '__proto__')
      return `labels: bad label name "${k.slice(0, 64)}"`
    if (typeof val !== 'string' || val.length > METRIC_LIMITS.labelLength) return `labels.${k}: a string`
    labels[k] = val
  }
  return entries.length > 0 ? { name: o.name, value: o.value, labels } : { name: o.name, value: o.value }
}

/**
 * Values of one series (name and labels) from one try, as a runner hands them on: the series is
 * keyed once, however many values it has.
 */
export interface MetricBatch {
  name: string
  labels?: Record<string, string>
  values: number[]
}

/** Names a task may not use: Shoal's own figures of every try go under them. */
export const OWN_PREFIX = 'shoal_'

/** One line of a command's metrics stream (fd 3), checked; or why it is dropped. */
export function parseMetricLine(line: string): MetricSample | string {
  if (Buffer.byteLength(line) > METRIC_LIMITS.lineBytes) return 'line too long'
  let v: unknown
  try {
    v = JSON.parse(line)
  } catch {
    return 'not JSON'
  }
  return checkSample(v)
}

/** One series (task, name, labels) and its exact figures. */
export interface SeriesFigures {
  task: string
  name: string
  labels: Record<string, string>
  count: number
  sum: number
  min: number
  max: number
}

/** One series' aggregate as replicated: its figures and a mergeable quantile sketch. */
export interface MetricSeries extends SeriesFigures {
  /** The DDSketch, protobuf, base64. */
  sketch: string
}

/** One daemon's aggregates of one job. The highest (incarnation, seq) wins: its owner's newest. */
export interface MetricRegister {
  job: string
  peer: string
  incarnation: number
  seq: number
  series: MetricSeries[]
  /** Values dropped: bad lines, over the limits. */
  dropped: number
}

export function mergeMetricRegister(a: MetricRegister, b: MetricRegister): MetricRegister {
  if (a.incarnation !== b.incarnation) return a.incarnation > b.incarnation ? a : b
  if (a.seq !== b.seq) return a.seq > b.seq ? a : b
  return compareStrings(canonical(a), canonical(b)) >= 0 ? a : b
}

/** The key of a series: task, name and labels (sorted). */
export function seriesKey(task: string, name: string, labels: Record<string, string> | undefined): string {
  const l = labels === undefined ? [] : Object.entries(labels).sort(([x], [y]) => compareStrings(x, y))
  return canonical([task, name, l])
}

/** A series being aggregated: mergeable with others of the same key. */
export class SeriesAggregate {
  readonly task: string
  readonly name: string
  readonly labels: Record<string, string>
  count = 0
  sum = 0
  min = Number.POSITIVE_INFINITY
  max = Number.NEGATIVE_INFINITY
  private readonly sketch = new LogCollapsingLowestDenseDDSketch({
    relativeAccuracy: QUANTILE_RELATIVE_ERROR,
    binLimit: BIN_LIMIT
  })

  constructor(task: string, name: string, labels: Record<string, string> = {}) {
    this.task = task
    this.name = name
    this.labels = labels
  }

  /**
   * Add a value; false (and nothing added) when the sum would leave the finite numbers: a register
   * with an infinite sum is one no daemon accepts.
   */
  add(value: number): boolean {
    const sum = this.sum + value
    if (!Number.isFinite(sum)) return false
    this.count++
    this.sum = sum
    if (value < this.min) this.min = value
    if (value > this.max) this.max = value
    this.sketch.accept(value)
    return true
  }

  /** Fold in a replicated series (of the same key); a sum past the finite numbers stays at their edge. */
  merge(s: MetricSeries): void {
    if (s.count === 0) return
    this.count += s.count
    this.sum = Math.max(-Number.MAX_VALUE, Math.min(Number.MAX_VALUE, this.sum + s.sum))
    if (s.min < this.min) this.min = s.min
    if (s.max > this.max) this.max = s.max
    const other = decodeSketch(s.sketch)
    const both = this.sketch.count > 0 && other.count > 0
    this.sketch.merge(other)
    // sketches-js 2.1.1 merges only the positive values into a sketch that holds some already
    // (BaseDDSketch.merge skips negativeStore): merge the negative ones too.
    if (both) this.sketch.negativeStore.merge(other.negativeStore)
  }

  /** A quantile, within the sketch's relative error, and never outside the values seen. */
  quantile(q: number): number | null {
    if (this.count === 0) return null
    return Math.min(this.max, Math.max(this.min, this.sketch.getValueAtQuantile(q)))
  }

  toSeries(): MetricSeries {
    return {
      task: this.task,
      name: this.name,
      labels: this.labels,
      count: this.count,
      sum: this.sum,
      min: this.count === 0 ? 0 : this.min,
      max: this.count === 0 ? 0 : this.max,
      sketch: Buffer.from(this.sketch.toProto()).toString('base64')
    }
  }

  static from(s: MetricSeries): SeriesAggregate {
    const agg = new SeriesAggregate(s.task, s.name, s.labels)
    agg.merge(s)
    return agg
  }
}

/** The mapping (gamma, offset, interpolation) of every sketch made here: the only one merged. */
const OUR_MAPPING = JSON.stringify(
  new LogCollapsingLowestDenseDDSketch({
    relativeAccuracy: QUANTILE_RELATIVE_ERROR,
    binLimit: BIN_LIMIT
  }).mapping.toProto()
)

/**
 * Decode a replicated sketch; throws on bytes that are not one, and on a sketch of another
 * mapping (another relative accuracy): it passed the wire, then made every merge throw.
 */
export function decodeSketch(b64: string): DDSketch {
  const sketch = DDSketch.fromProto(Buffer.from(b64, 'base64'))
  if (JSON.stringify(sketch.mapping.toProto()) !== OUR_MAPPING) throw new Error('a sketch of another mapping')
  return sketch
}

/** A series as GET /v1/jobs/:id/metrics shows it, over every daemon. */
export interface JobMetric extends SeriesFigures {
  p50: number | null
  p90: number | null
  p99: number | null
}

/** The job's metrics over every daemon's register: series merged by key, sorted by name. */
export function aggregateJob(registers: Iterable<MetricRegister>): { metrics: JobMetric[]; dropped: number } {
  const byKey = new Map<string, SeriesAggregate>()
  let dropped = 0
  for (const r of registers) {
    dropped += r.dropped
    for (const s of r.series) {
      const key = seriesKey(s.task, s.name, s.labels)
      const agg = byKey.get(key)
      if (agg === undefined) byKey.set(key, SeriesAggregate.from(s))
      else agg.merge(s)
    }
  }
  const metrics = [...byKey.entries()]
    .sort(([a], [b]) => compareStrings(a, b))
    .map(([, a]) => ({
      task: a.task,
      name: a.name,
      labels: a.labels,
      count: a.count,
      sum: a.sum,
      min: a.min,
      max: a.max,
      p50: a.quantile(0.5),
      p90: a.quantile(0.9),
      p99: a.quantile(0.99)
    }))
  return { metrics, dropped }
}
