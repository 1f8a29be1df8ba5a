/**
 * The virtual clock: a priority queue of events ordered by time, then by insertion sequence, so
 * two events at the same instant always run in the order they were scheduled. Nothing here reads
 * a real clock; time moves only when the next event is taken.
 */

interface Event {
  at: number
  seq: number
  fn: () => void
}

export class VirtualClock {
  private heap: Event[] = []
  private seq = 0
  private current = 0
  /** Events run so far (a cheap fingerprint of a run and a measure of its work). */
  executed = 0

  /** Virtual time, ms. */
  get now(): number {
    return this.current
  }

  get pending(): number {
    return this.heap.length
  }

  /** Run `fn` at virtual time `at` (never earlier than now). */
  at(at: number, fn: () => void): void {
    const ev: Event = { at: Math.max(at, this.current), seq: this.seq++, fn }
    const h = this.heap
    h.push(ev)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      const parent = h[p] as Event
      if (!before(ev, parent)) break
      h[i] = parent
      i = p
    }
    h[i] = ev
  }

  /** Run `fn` after `delayMs`. */
  after(delayMs: number, fn: () => void): void {
    this.at(this.current + delayMs, fn)
  }

  /**
   * Run events in order until `until` returns true (checked after each event), the queue is
   * empty, or the next event lies beyond `limit`. Returns false when it stopped at the limit.
   */
  run(limit: number, until: () => boolean): boolean {
    for (;;) {
      const ran = this.step(limit)
      if (ran !== 'ran') return ran === 'empty'
      if (until()) return true
    }
  }

  /**
   * {@link run}, awaiting `settle` after each event: the engine under test is asynchronous, and
   * its promise chains (microtasks) must run out before virtual time moves on.
   */
  async runAsync(limit: number, until: () => boolean, settle: () => Promise<void>): Promise<boolean> {
    for (;;) {
      const ran = this.step(limit)
      if (ran !== 'ran') return ran === 'empty'
      await settle()
      if (until()) return true
    }
  }

  /** Run the next event, unless none is left or it lies beyond `limit` (then time is `limit`). */
  private step(limit: number): 'ran' | 'empty' | 'limit' {
    const top = this.heap[0]
    if (top === undefined) return 'empty'
    if (top.at > limit) {
      this.current = limit
      return 'limit'
    }
    this.pop()
    this.current = top.at
    this.executed++
    top.fn()
    return 'ran'
  }

  private pop(): void {
    const h = this.heap
    const last = h.pop() as Event
    if (h.length === 0) return
    let i = 0
    const n = h.length
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      let c = l
      if (r < n && before(h[r] as Event, h[l] as Event)) c = r
      if (!before(h[c] as Event, last)) break
      h[i] = h[c] as Event
      i = c
    }
    h[i] = last
  }
}

function before(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq)
}
