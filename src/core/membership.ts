import { judge, type Liveness } from './liveness.ts'

/** What membership needs of a heartbeat record (the daemon's carries more: addresses, load). */
export interface MemberRecord {
  peerId: string
  incarnation: number
  seq: number
  synced: boolean
  claiming: boolean
  leaving: boolean
  suspects: readonly string[]
}

interface Known<R> {
  record: R
  /** This observer's monotonic ms when it last heard the peer (moved on by forgiven stalls). */
  heardAt: number
  /** Judged dead for this record: stays dead until a newer heartbeat arrives. */
  dead: boolean
}

/** A change of a peer's state as this observer judges it (for invariants and logs). */
export type Transition = { peerId: string; seq: number; incarnation: number; from: Liveness; to: Liveness }

/**
 * The membership table: each daemon's newest record (highest incarnation, then seq) and when
 * this observer last heard from it, on its own monotonic clock. Pure: the clock is injected,
 * so the daemon and the simulator run this very code.
 *
 * Two rules keep judgements honest under load:
 * - **Dead is final for a record.** Once judged dead, a peer stays dead until a heartbeat newer
 *   than the one it was judged on arrives; nothing else (a stall of this observer, a clock
 *   step) brings it back.
 * - **Forgive only the stall** (Lifeguard). When this observer's heartbeat loop ran late, the
 *   silence it measured during the lateness says nothing about others; it is forgiven once,
 *   exactly that long, and only for peers not already dead when the stall began. Forgiving a
 *   fixed amount instead (as this code once did) let a loaded daemon, stalling every second,
 *   hold dead peers alive forever.
 */
export class Membership<R extends MemberRecord = MemberRecord> {
  private readonly known = new Map<string, Known<R>>()
  private readonly selfId: string
  private readonly suspectMs: number
  private readonly now: () => number
  private readonly startedAt: number
  private readonly heartbeatMs: number
  /** When the heartbeat loop last ran, on this observer's clock (see guardStall). */
  private lastTick: number
  private readonly onTransition: ((t: Transition) => void) | undefined
  /** Last state reported per peer (only to report transitions). */
  private readonly reported = new Map<string, Liveness>()
  /** How many stalls of this observer were detected (for metrics and tests). */
  stalls = 0
  /** Total silence forgiven after stalls, ms. */
  forgivenMs = 0

  constructor(
    selfId: string,
    suspectMs: number,
    heartbeatMs: number,
    now: () => number,
    onTransition?: (t: Transition) => void
  ) {
    this.selfId = selfId
    this.suspectMs = suspectMs
    this.heartbeatMs = heartbeatMs
    this.now = now
    this.startedAt = now()
    this.lastTick = this.startedAt
    this.onTransition = onTransition
  }

  get self(): string {
    return this.selfId
  }

  /** The heartbeat loop ran (it calls this every heartbeatMs). */
  tick(): void {
    this.guardStall()
    this.lastTick = this.now()
  }

  /**
   * Lifeguard's local health check, done before every judgement: if the heartbeat loop has not
   * run for more than two periods, this observer was stalled (event-loop block, SIGSTOP, swap,
   * a starved CPU). Whatever runs first after a stall (a claim tick, an API call, the heartbeat
   * itself) forgives the lateness — the gap beyond one period — before judging, once.
   */
  private guardStall(): void {
    const now = this.now()
    const gap = now - this.lastTick
    if (gap <= 2 * this.heartbeatMs) return
    const late = gap - this.heartbeatMs
    this.stalls++
    this.forgivenMs += late
    for (const [id, k] of this.known) {
      if (k.dead || k.record.leaving) continue
      // Dead already when the stall began: the stall changes nothing about it.
      if (judge(this.lastTick - k.heardAt, this.suspectMs, false) === 'dead') {
        this.markDead(id, k)
        continue
      }
      k.heardAt = Math.min(now, k.heardAt + late)
    }
    this.lastTick = now
  }

  /**
   * Take a heartbeat's record. Returns whether it told something new (a new peer or state) and
   * whether the peer (re)appeared: new, back from dead or silence, or in a new life.
   */
  observe(record: R): { changed: boolean; connected: boolean } {
    const cur = this.known.get(record.peerId)
    if (
      cur !== undefined &&
      (record.incarnation < cur.record.incarnation ||
        (record.incarnation === cur.record.incarnation && record.seq <= cur.record.seq))
    ) {
      return { changed: false, connected: false }
    }
    const before = cur === undefined ? undefined : this.stateOf(record.peerId, cur)
    const changed =
      cur === undefined ||
      before !== 'alive' ||
      cur.record.incarnation !== record.incarnation ||
      cur.record.leaving !== record.leaving ||
      cur.record.claiming !== record.claiming ||
      cur.record.synced !== record.synced
    const connected =
      cur === undefined ||
      (before !== 'alive' && before !== 'suspect') ||
      cur.record.incarnation !== record.incarnation
    this.known.set(record.peerId, { record, heardAt: this.now(), dead: false })
    this.report(record.peerId, record, record.leaving ? 'left' : 'alive')
    return { changed, connected }
  }

  /** Peers this observer suspects or holds dead (carried in its heartbeats). */
  suspects(): string[] {
    const out: string[] = []
    for (const [id, k] of this.known) {
      const s = this.stateOf(id, k)
      if (s === 'suspect' || s === 'dead') out.push(id)
    }
    return out.slice(0, 256)
  }

  /**
   * Alive peers whose newest heartbeat names `self` as a suspect. While any do, self claims
   * nothing (SWIM refutation): they may be about to lapse its leases.
   */
  suspectedBy(): string[] {
    const out: string[] = []
    for (const [id, k] of this.known) {
      if (this.stateOf(id, k) === 'alive' && k.record.suspects.includes(this.selfId)) out.push(id)
    }
    return out
  }

  record(peerId: string): R | undefined {
    return this.known.get(peerId)?.record
  }

  state(peerId: string): Liveness | undefined {
    const k = this.known.get(peerId)
    return k === undefined ? undefined : this.stateOf(peerId, k)
  }

  /** Every known peer's record with its state (self excluded). */
  entries(): Array<{ record: R; state: Liveness }> {
    return [...this.known].map(([id, k]) => ({ record: k.record, state: this.stateOf(id, k) }))
  }

  /** Has the holder been heard in a newer incarnation than this one? */
  superseded(holder: string, incarnation: number): boolean {
    const k = this.known.get(holder)
    return k !== undefined && k.record.incarnation > incarnation
  }

  /**
   * Is the lease of (holder, incarnation) live? Live while the holder is alive or suspect in
   * that same incarnation. A newer incarnation, or dead, or left, lapses it. A holder never heard
   * from is given the benefit of the doubt until this observer has listened for 2 × suspectMs.
   */
  leaseLive(holder: string, incarnation: number): boolean {
    const k = this.known.get(holder)
    if (k === undefined) return this.now() - this.startedAt < 2 * this.suspectMs
    if (k.record.incarnation > incarnation) return false
    const s = this.stateOf(holder, k)
    return s === 'alive' || s === 'suspect'
  }

  private stateOf(id: string, k: Known<R>): Liveness {
    this.guardStall()
    if (k.record.leaving) return this.report(id, k.record, 'left')
    if (k.dead) return 'dead'
    const s = judge(this.now() - k.heardAt, this.suspectMs, false)
    if (s === 'dead') this.markDead(id, k)
    return this.report(id, k.record, s)
  }

  private markDead(id: string, k: Known<R>): void {
    k.dead = true
    this.report(id, k.record, 'dead')
  }

  private report(id: string, record: R, to: Liveness): Liveness {
    const from = this.reported.get(id)
    if (from !== to) {
      this.reported.set(id, to)
      if (from !== undefined)
        this.onTransition?.({ peerId: id, seq: record.seq, incarnation: record.incarnation, from, to })
    }
    return to
  }
}
