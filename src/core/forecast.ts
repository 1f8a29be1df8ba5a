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

  /**
   * How many fragments of the task a daemon may hold per slot, claimed and queued for a warm
   * worker, so a worker goes from one fragment to the next without waiting for the claim loop:
   * as many as run in PREFETCH_MS on average (1 for a task that takes that long, or before any
   * ran), at most MAX_DEPTH. A queued fragment waits about PREFETCH_MS at most, and no other
   * daemon can take it meanwhile: the bound keeps both small.
   */
  depth(): number {
    if (this.meanRunMs === undefined) return 1
    return Math.max(1, Math.min(MAX_DEPTH, Math.floor(PREFETCH_MS / Math.max(this.meanRunMs, 0.01))))
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

/** The work, in mean run times, a daemon may queue per slot for a warm worker (see depth). */
export const PREFETCH_MS = 50
/** The most fragments queued per slot, however short the task. */
export const MAX_DEPTH = 16
