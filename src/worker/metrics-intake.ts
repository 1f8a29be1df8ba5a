import { StringDecoder } from 'node:string_decoder'
import { checkSample, METRIC_LIMITS, type MetricSample, parseMetricLine } from '../core/metrics.ts'

/**
 * The metric values of one try, as they come: lines of JSON from a command's metrics stream
 * (fd 3), or samples from a module's `ctx.metric` or an ndjson worker's answer. Checked one by
 * one; a bad value, a line too long, or a value past the per-try limit is dropped and counted,
 * never an error of the try. Memory stays bounded whatever the task writes.
 */
export class MetricsIntake {
  readonly samples: MetricSample[] = []
  dropped = 0
  private readonly decoder = new StringDecoder('utf8')
  private partial = ''
  /** The current line is already too long: skip to its end. */
  private skipping = false

  /** Take bytes of a metrics stream (JSON lines). */
  write(chunk: Buffer): void {
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
    this.partial += this.decoder.end()
    if (this.partial !== '' || this.skipping) this.line('')
  }

  /** Take samples already decoded (a module's, an ndjson worker's). */
  take(values: readonly unknown[]): void {
    for (const v of values) this.keep(checkSample(v))
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
    this.keep(parseMetricLine(line))
  }

  private keep(s: MetricSample | string): void {
    if (typeof s === 'string' || this.samples.length >= METRIC_LIMITS.perTry) this.dropped++
    else this.samples.push(s)
  }

  /** What a TaskResult carries. */
  result(): { metrics?: MetricSample[]; metricsDropped?: number } {
    return {
      ...(this.samples.length > 0 ? { metrics: this.samples } : {}),
      ...(this.dropped > 0 ? { metricsDropped: this.dropped } : {})
    }
  }
}
