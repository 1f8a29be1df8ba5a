import { StringDecoder } from 'node:string_decoder'
import {
  checkSample,
  METRIC_LIMITS,
  type MetricBatch,
  type MetricSample,
  OWN_PREFIX,
  parseMetricLine
} from '../core/metrics.ts'

/** Bad lines parsed per try; past them, lines are counted, not parsed (a task writing junk flat out). */
const BAD_LINES_PARSED = 1000

/**
 * The metric values of one try, as they come: lines of JSON from a command's metrics stream
 * (fd 3), samples from an ndjson worker's answer, or a module thread's values already grouped by
 * series. Checked; a bad value, a line too long, or a value past the per-try limit is dropped and
 * counted, never an error of the try. Values are grouped by series (name and labels as given),
 * so the daemon keys each series once. Memory stays bounded whatever the task writes.
 */
export class MetricsIntake {
  private readonly groups = new Map<string, MetricBatch>()
  private values = 0
  dropped = 0
  private readonly decoder = new StringDecoder('utf8')
  private partial = ''
  /** The current line is already too long: skip to its end. */
  private skipping = false
  /** Only counting lines now (see write), and whether a line without its newline is under way. */
  private counting = false
  private tail = false

  /** Values kept so far. */
  get count(): number {
    return this.values
  }

  /** Take bytes of a metrics stream (JSON lines). */
  write(chunk: Buffer): void {
    // Past the per-try limit or the bad-line budget nothing more is kept: count the lines only,
    // without decoding or parsing them, so a task writing flat out costs the daemon little.
    if (this.values >= METRIC_LIMITS.perTry || this.dropped >= BAD_LINES_PARSED) {
      if (!this.counting) {
        // The line under way is dropped with the rest.
        this.counting = true
        this.tail = this.partial !== '' || this.skipping
        this.partial = ''
      }
      for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, i + 1)) {
        this.dropped++
        this.tail = false
      }
      if (chunk.length > 0 && chunk[chunk.length - 1] !== 10) this.tail = true
      return
    }
    let text = this.decoder.write(chunk)
    for (;;) {
      const nl = text.indexOf('\n')
      if (nl < 0) break
      this.line(text.slice(0, nl))
      text = text.slice(nl + 1)
    }
    this.partial += text
    if (!this.skipping && this.partial.length > METRIC_LIMITS.lineBytes) {
      this.skipping = true
      this.partial = ''
    }
    if (this.skipping) this.partial = ''
  }

  /** The stream ended: a last line without its newline counts too. */
  end(): void {
    if (this.counting) {
      if (this.tail) this.dropped++
      return
    }
    this.partial += this.decoder.end()
    if (this.partial !== '' || this.skipping) this.line('')
  }

  /** Take samples already decoded (an ndjson worker's). */
  take(values: readonly unknown[]): void {
    for (const v of values) this.keep(checkSample(v))
  }

  /**
   * Take a module thread's values, grouped there by series: `[name, labels, values]` each. The
   * name and labels are checked once per group, each value on its own.
   */
  takeGrouped(groups: readonly unknown[]): void {
    for (const g of groups) {
      if (!Array.isArray(g) || !Array.isArray(g[2])) {
        this.dropped++
        continue
      }
      const values = g[2] as unknown[]
      const head = checkSample({ name: g[0], value: 0, labels: g[1] ?? undefined })
      if (typeof head === 'string' || head.name.startsWith(OWN_PREFIX)) {
        this.dropped += values.length
        continue
      }
      const batch = this.group(head.name, head.labels)
      for (const v of values) {
        if (typeof v !== 'number' || !Number.isFinite(v)) this.dropped++
        else if (this.values >= METRIC_LIMITS.perTry) this.dropped++
        else {
          batch.values.push(v)
          this.values++
        }
      }
    }
  }

  private line(rest: string): void {
    const line = this.partial + rest
    this.partial = ''
    if (this.skipping) {
      this.skipping = false
      this.dropped++
      return
    }
    if (line.trim() === '') return
    // Not a JSON object, or past the bad-line budget: no parse needed to drop it.
    if (this.dropped >= BAD_LINES_PARSED || line.trimStart()[0] !== '{') {
      this.dropped++
      return
    }
    this.keep(parseMetricLine(line))
  }

  private keep(s: MetricSample | string): void {
    if (typeof s === 'string' || s.name.startsWith(OWN_PREFIX)) this.dropped++
    else this.push(s.name, s.labels, s.value)
  }

  private push(name: string, labels: Record<string, string> | undefined, value: number): void {
    if (this.values >= METRIC_LIMITS.perTry) {
      this.dropped++
      return
    }
    this.group(name, labels).values.push(value)
    this.values++
  }

  /** The batch of a series (name and labels as given), made on first use. */
  private group(name: string, labels: Record<string, string> | undefined): MetricBatch {
    const key = labels === undefined ? name : `${name}\n${JSON.stringify(labels)}`
    let g = this.groups.get(key)
    if (g === undefined) {
      g = labels === undefined ? { name, values: [] } : { name, labels, values: [] }
      this.groups.set(key, g)
    }
    return g
  }

  /** What a TaskResult carries (series that kept no value are left out). */
  result(): { metrics?: MetricBatch[]; metricsDropped?: number } {
    const metrics = [...this.groups.values()].filter((g) => g.values.length > 0)
    return {
      ...(metrics.length > 0 ? { metrics } : {}),
      ...(this.dropped > 0 ? { metricsDropped: this.dropped } : {})
    }
  }
}
