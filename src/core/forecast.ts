/**
 * A forecast of a task's demand for warm workers (the warm pool of US10997538B1, from history):
 * the recent arrival rate of its fragments, an exponentially decaying average with time constant
 * `tauMs`, times their recent mean run time, is how many run at once on average (Little's law);
 * the pool keeps that many, with headroom, between its minimum and maximum. Pure: time is passed in.
 */
export class DemandForecast {
  private readonly tauMs: number
  private rate = 0
  private lastAt: number | undefined
  private meanRunMs: number | undefined

  constructor(tauMs = 3000) {
    this.tauMs = tauMs
  }

  /** A fragment of the task started at `nowMs`. */
  arrived(nowMs: number): void {
    this.decay(nowMs)
    this.rate += 1000 / this.tauMs
  }

  /** A fragment of the task ran for `ms`. */
  ran(ms: number): void {
    this.meanRunMs = this.meanRunMs === undefined ? ms : this.meanRunMs * 0.9 + ms * 0.1
  }

  /** Fragments per second, now. */
  ratePerSecond(nowMs: number): number {
    this.decay(nowMs)
    return this.rate
  }

  /** Workers to keep ready now: λ × W with 25 % headroom, rounded up, within [min, max]. */
  target(nowMs: number, min: number, max: number): number {
    const busy = this.ratePerSecond(nowMs) * ((this.meanRunMs ?? 0) / 1000)
    const want = busy > 0.01 ? Math.ceil(busy * 1.25) : 0
    return Math.max(min, Math.min(max, want))
  }

  private decay(nowMs: number): void {
    if (this.lastAt !== undefined && nowMs > this.lastAt)
      this.rate *= Math.exp(-(nowMs - this.lastAt) / this.tauMs)
    this.lastAt = Math.max(nowMs, this.lastAt ?? nowMs)
  }
}
