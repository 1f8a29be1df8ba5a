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
  /** The sender's heartbeat period, ms (absent: the configured heartbeatMs). */
  every?: number
}

/**
 * Heartbeats a daemon receives per second, at most: in a mesh larger than this × heartbeatMs /
 * 1000 daemons (50 at the default 250 ms), every daemon heartbeats less often, so that the load
 * stays flat as the mesh grows, and peers judge its silence against the period it announces.
 * Detection time then grows with the mesh (4 s at 200 daemons, 20 s at 1,000), as in memberlist,
 * whose suspicion timeout also grows with the cluster.
 */
export const HEARTBEAT_BUDGET_PER_SECOND = 200
/** The longest heartbeat period the budget may stretch to (well under what the wire accepts). */
export const MAX_HEARTBEAT_PERIOD_MS = 10_000

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
  /** Bumped whenever a judgement or a record's flags may have changed (see stamp). */
  private version = 0
  /** The earliest time a judgement can change by silence alone (see stamp). */
  private nextDeadline = Number.NEGATIVE_INFINITY
  private live = { version: -1, count: 0, unannounced: false, maxEvery: 0 }
  /** Peers whose newest record names this observer a suspect (see suspectedBy). */
  private readonly namesMe = new Set<string>()
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

  /**
   * This daemon's heartbeat period now: heartbeatMs, or longer in a large mesh, so that every
   * daemon receives at most HEARTBEAT_BUDGET_PER_SECOND heartbeats a second. Only peers not
   * judged dead or left count; and while any of them does not announce its own period (an older
   * daemon, which would judge us by heartbeatMs), the period stays heartbeatMs.
   */
  heartbeatEvery(): number {
    const live = this.liveStats()
    if (live.unannounced) return this.heartbeatMs
    const spread = Math.ceil((1000 * live.count) / HEARTBEAT_BUDGET_PER_SECOND)
    return Math.min(MAX_HEARTBEAT_PERIOD_MS, Math.max(this.heartbeatMs, spread))
  }

  /**
   * Silence after which a holder counts as suspect, for the lease rules beyond membership (a
   * claim learned lately, an overdue claim): by the period the holder announced, or, for one
   * never heard, by the longest period in the mesh, this daemon's own included.
   */
  suspectWindow(holder?: string): number {
    const k = holder === undefined ? undefined : this.known.get(holder)
    if (k !== undefined) return this.suspectFor(k.record)
    const every = Math.max(this.heartbeatEvery(), this.liveStats().maxEvery)
    return (this.suspectMs * Math.min(MAX_HEARTBEAT_PERIOD_MS, every)) / this.heartbeatMs
  }

  /** Live peers, recounted when the table changed: how many, whether all announce a period, the longest. */
  private liveStats(): { count: number; unannounced: boolean; maxEvery: number } {
    if (this.live.version === this.version) return this.live
    let count = 0
    let unannounced = false
    let maxEvery = this.heartbeatMs
    for (const k of this.known.values()) {
      if (k.dead || k.record.leaving) continue
      count++
      if (k.record.every === undefined) unannounced = true
      else maxEvery = Math.max(maxEvery, k.record.every)
    }
    this.live = { version: this.version, count, unannounced, maxEvery }
    return this.live
  }

  /** Silence after which this peer is suspect: suspectMs, scaled by the period it announced. */
  private suspectFor(record: R): number {
    const every = Math.min(
      MAX_HEARTBEAT_PERIOD_MS,
      Math.max(this.heartbeatMs, record.every ?? this.heartbeatMs)
    )
    return (this.suspectMs * every) / this.heartbeatMs
  }

  /** The local-health loop ran (the mesh calls this every heartbeatMs, whatever its heartbeat period). */
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
      if (judge(this.lastTick - k.heardAt, this.suspectFor(k.record), false) === 'dead') {
        this.markDead(id, k)
        continue
      }
      k.heardAt = Math.min(now, k.heardAt + late)
    }
    this.version++
    this.nextDeadline = Number.NEGATIVE_INFINITY
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
    if (changed) this.version++
    // Its silence deadline may come before every other one (a new peer, one back from dead).
    this.nextDeadline = Math.min(this.nextDeadline, this.now() + this.suspectFor(record))
    if (record.suspects.includes(this.selfId)) this.namesMe.add(record.peerId)
    else this.namesMe.delete(record.peerId)
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
    for (const id of this.namesMe) {
      const k = this.known.get(id) as Known<R>
      if (this.stateOf(id, k) === 'alive') out.push(id)
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
   * from is given the benefit of the doubt until this observer has listened for two of its
   * suspect windows (longer in a large mesh, whose heartbeats are further apart).
   */
  leaseLive(holder: string, incarnation: number): boolean {
    const k = this.known.get(holder)
    if (k === undefined) return this.now() - this.startedAt < 2 * this.suspectWindow(holder)
    if (k.record.incarnation > incarnation) return false
    const s = this.stateOf(holder, k)
    return s === 'alive' || s === 'suspect'
  }

  /**
   * A stamp that stays the same while no judgement and no record's flags changed, so callers can
   * keep what they derived from the table (the claimers) instead of rescanning it on every claim
   * scan. Cheap: it rescans only once the earliest silence deadline of a live peer has passed.
   */
  stamp(): number {
    this.guardStall()
    if (this.now() >= this.nextDeadline) {
      let next = Number.POSITIVE_INFINITY
      for (const [id, k] of this.known) {
        const s = this.stateOf(id, k)
        if (s !== 'alive' && s !== 'suspect') continue
        const threshold = this.suspectFor(k.record) * (s === 'alive' ? 1 : 2)
        next = Math.min(next, k.heardAt + threshold)
      }
      this.nextDeadline = next
    }
    return this.version
  }

  private stateOf(id: string, k: Known<R>): Liveness {
    this.guardStall()
    if (k.record.leaving) return this.report(id, k.record, 'left')
    if (k.dead) return 'dead'
    const s = judge(this.now() - k.heardAt, this.suspectFor(k.record), false)
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
      this.version++
      this.reported.set(id, to)
      if (from !== undefined)
        this.onTransition?.({ peerId: id, seq: record.seq, incarnation: record.incarnation, from, to })
    }
    return to
  }
}
