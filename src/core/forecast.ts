/**
 * A forecast of a task's demand for warm workers (the warm pool of US10997538B1, from history):
 * the recent arrival rate of its fragments, an exponentially decaying average with time constant
 * `tauMs`, times their recent mean run time, is how many run at once on average (Little's law);
 * the pool keeps that many, with headroom, between its minimum and maximum. Schedules add what
 * they will bring: the fragments of a tick due soon (this daemon's share) are wanted ready from
 * SCHEDULE_LEAD_MS before the tick until SCHEDULE_HOLD_MS after it. A daemon with no history of
 * its own takes the mesh's mean run time of the task (from the task metrics). Pure: time is
 * passed in.
 */
export class DemandForecast {
  private readonly tauMs: number
  private rate = 0
  private lastAt: number | undefined
  private meanRunMs: number | undefined
  /** Fragments expected at a tick (`at`, on the clock of `nowMs`), by the tick's key. */
  private readonly ticks = new Map<string, { at: number; fragments: number }>()

  /**
   * Fragments of a schedule's tick, `key` (the same key each time it is told of the same tick),
   * due at `atMs`, that this daemon expects to run.
   */
  expect(key: string, atMs: number, fragments: number): void {
    this.ticks.set(key, { at: atMs, fragments: Math.max(this.ticks.get(key)?.fragments ?? 0, fragments) })
    if (this.ticks.size > MAX_TICKS) {
      const oldest = [...this.ticks.entries()].reduce((a, b) => (b[1].at < a[1].at ? b : a))
      this.ticks.delete(oldest[0])
    }
  }

  /** The mesh's mean run time of the task, taken while this daemon has none of its own. */
  seed(meanRunMs: number): void {
    if (this.meanRunMs === undefined && Number.isFinite(meanRunMs) && meanRunMs >= 0)
      this.meanRunMs = meanRunMs
  }

  /** Whether this daemon has seen the task run (or was seeded). */
  get hasHistory(): boolean {
    return this.meanRunMs !== undefined
  }

  /** Fragments that schedules bring now: ticks from SCHEDULE_LEAD_MS ahead to SCHEDULE_HOLD_MS past. */
  scheduled(nowMs: number): number {
    let n = 0
    for (const [key, { at, fragments }] of this.ticks) {
      if (nowMs > at + SCHEDULE_HOLD_MS) this.ticks.delete(key)
      else if (nowMs >= at - SCHEDULE_LEAD_MS) n += fragments
    }
    return n
  }

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

  /**
   * Workers to keep ready now: λ × W with 25 % headroom, rounded up, or the fragments schedules
   * bring now if more, within [min, max].
   */
  target(nowMs: number, min: number, max: number): number {
    const busy = this.ratePerSecond(nowMs) * ((this.meanRunMs ?? 0) / 1000)
    const want = Math.max(busy > 0.01 ? Math.ceil(busy * 1.25) : 0, this.scheduled(nowMs))
    return Math.max(min, Math.min(max, want))
  }

  private decay(nowMs: number): void {
    if (this.lastAt !== undefined && nowMs > this.lastAt)
      this.rate *= Math.exp(-(nowMs - this.lastAt) / this.tauMs)
    this.lastAt = Math.max(nowMs, this.lastAt ?? nowMs)
  }
}

/** How long before a scheduled tick its fragments are wanted ready, and for how long after. */
export const SCHEDULE_LEAD_MS = 5000
export const SCHEDULE_HOLD_MS = 5000
/** Ticks remembered per task. */
const MAX_TICKS = 32

/** The work, in mean run times, a daemon may queue per slot for a warm worker (see depth). */
export const PREFETCH_MS = 50
/** The most fragments queued per slot, however short the task. */
export const MAX_DEPTH = 16
