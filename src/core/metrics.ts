import { DDSketch, LogCollapsingLowestDenseDDSketch } from '@datadog/sketches-js'
// The package's protobuf types (its own serialiser writes a store's padded bin array, zeros and all).
import protoRoot from '@datadog/sketches-js/dist/ddsketch/proto/compiled.js'
import type { DenseStore } from '@datadog/sketches-js/dist/ddsketch/store/index.js'
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
/**
 * Most bytes of encoded sketches in one register (base64): past it, fitSketches caps the widest
 * sketches' spans. 64 series spanning a ratio of 1,000 each fit as they are, and 64 spanning
 * 10^4 keep their p50; 80 series of MIN_BINS bins a sign take well under it, so every register fits.
 */
export const REGISTER_SKETCH_BYTES = 256 * 1024
/** The fewest bins a sign fitSketches leaves a sketch (its top values then span a ratio of 1.9). */
const MIN_BINS = 32

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
  private sketch = new LogCollapsingLowestDenseDDSketch({
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

  /** The bins the sketch spans: the ranges of keys of its positive and its negative values. */
  spans(): [number, number] {
    const width = (st: DenseStore) => (st.count === 0 ? 0 : st.maxKey - st.minKey + 1)
    return [width(this.sketch.store), width(this.sketch.negativeStore)]
  }

  /**
   * Keep at most `binLimit` bins a sign (at least MIN_BINS): the lowest bins of
   * each sign fold into one, so only the quantiles among the smallest values (by magnitude) lose
   * their accuracy; count, sum, min and max stay exact.
   */
  coarsen(binLimit: number): void {
    const limit = Math.max(MIN_BINS, binLimit)
    const old = this.sketch
    const next = new LogCollapsingLowestDenseDDSketch({
      relativeAccuracy: QUANTILE_RELATIVE_ERROR,
      binLimit: BIN_LIMIT
    })
    // Folded here, not by the library's collapsing store (filled bin by bin it misplaced counts).
    const refill = (from: DenseStore, into: DenseStore) => {
      if (from.count === 0) return
      const lowest = Math.max(from.minKey, from.maxKey - limit + 1)
      let folded = 0
      for (let key = from.minKey; key < lowest; key++) folded += from.bins[key - from.offset] ?? 0
      if (folded > 0) into.add(lowest, folded)
      for (let key = lowest; key <= from.maxKey; key++) {
        const n = from.bins[key - from.offset] ?? 0
        if (n > 0) into.add(key, n)
      }
    }
    refill(old.store, next.store)
    refill(old.negativeStore, next.negativeStore)
    next.zeroCount = old.zeroCount
    next.count = old.count
    next.sum = old.sum
    next.min = old.min
    next.max = old.max
    this.sketch = next
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
      sketch: encodeSketch(this.sketch)
    }
  }

  static from(s: MetricSeries): SeriesAggregate {
    const agg = new SeriesAggregate(s.task, s.name, s.labels)
    agg.merge(s)
    return agg
  }
}

/**
 * The series of one register, their sketches fitted to REGISTER_SKETCH_BYTES: a sketch is stored
 * dense, so a few values at the far ends of the doubles span 2,048 bins a sign (44 KB), and a
 * register of 80 such series, rewritten and gossiped at every flush, was 2.8 MB. Past the budget,
 * one cap on every sketch's span (bins a sign) is chosen, the widest the budget allows, and only
 * the sketches wider than it lose their lowest bins, each as few as the cap asks; a register of
 * ordinary series fits as it is.
 */
export function fitSketches(aggs: readonly SeriesAggregate[]): MetricSeries[] {
  const out = aggs.map((a) => a.toSeries())
  const total = (series: readonly MetricSeries[]) => series.reduce((n, s) => n + s.sketch.length, 0)
  if (total(out) <= REGISTER_SKETCH_BYTES) return out
  const spans = aggs.map((a) => a.spans())
  // Each bin is a double: 8 bytes, 32/3 once in base64.
  const at = (cap: number) =>
    out.reduce((n, s, i) => {
      const [pos, neg] = spans[i] as [number, number]
      return n + s.sketch.length - ((pos + neg - Math.min(pos, cap) - Math.min(neg, cap)) * 32) / 3
    }, 0)
  let lo = MIN_BINS
  let hi = Math.max(...spans.flat())
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2)
    if (at(mid) <= REGISTER_SKETCH_BYTES) lo = mid
    else hi = mid - 1
  }
  // The estimate leaves out varint widths: if the register is still over, a tighter cap.
  for (let cap = lo; ; cap = Math.max(MIN_BINS, Math.floor(cap * 0.9))) {
    for (const [i, agg] of aggs.entries()) {
      const [pos, neg] = spans[i] as [number, number]
      if (Math.max(pos, neg) <= cap) continue
      agg.coarsen(cap)
      spans[i] = agg.spans()
      out[i] = agg.toSeries()
    }
    if (total(out) <= REGISTER_SKETCH_BYTES || cap === MIN_BINS) return out
  }
}

interface ProtoMessage {
  create(fields: object): unknown
  encode(message: unknown): { finish(): Uint8Array }
}
const proto = protoRoot as unknown as { DDSketch: ProtoMessage; Store: ProtoMessage }

/** A store's bins from its lowest key to its highest: no padding (the format's contiguous bins). */
function storeProto(st: DenseStore): unknown {
  if (st.count === 0) return proto.Store.create({ contiguousBinCounts: [], contiguousBinIndexOffset: 0 })
  return proto.Store.create({
    contiguousBinCounts: st.bins.slice(st.minKey - st.offset, st.maxKey - st.offset + 1),
    contiguousBinIndexOffset: st.minKey
  })
}

/**
 * Encode a sketch for a register (base64 of the DDSketch protobuf). The same format the
 * package writes and reads, without the zeros it pads a store's bins with (up to 127 a sign).
 */
export function encodeSketch(sketch: DDSketch): string {
  const message = proto.DDSketch.create({
    mapping: sketch.mapping.toProto(),
    positiveValues: storeProto(sketch.store),
    negativeValues: storeProto(sketch.negativeStore),
    zeroCount: sketch.zeroCount
  })
  return Buffer.from(proto.DDSketch.encode(message).finish()).toString('base64')
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
