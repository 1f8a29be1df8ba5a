import { judge, type Liveness } from '../core/liveness.ts'
import type { PeerRecord } from '../core/wire.ts'

export interface PeerView extends PeerRecord {
  state: Liveness
  self: boolean
}

interface Known {
  record: PeerRecord
  /** This observer's monotonic ms when it last heard the peer. */
  heardAt: number
}

/**
 * The membership table: each daemon's newest record (highest incarnation, then seq) and when
 * this observer last heard from it, on its own monotonic clock.
 */
export class Membership {
  private readonly known = new Map<string, Known>()
  private readonly selfId: string
  private readonly suspectMs: number
  private readonly now: () => number
  private readonly startedAt: number
  private readonly heartbeatMs: number
  /** When the heartbeat loop last ran, on this observer's clock (see guardStall). */
  private lastTick: number

  constructor(selfId: string, suspectMs: number, heartbeatMs: number, now: () => number) {
    this.selfId = selfId
    this.suspectMs = suspectMs
    this.heartbeatMs = heartbeatMs
    this.now = now
    this.startedAt = now()
    this.lastTick = this.startedAt
  }

  /** The heartbeat loop ran (it calls this every heartbeatMs). */
  tick(): void {
    this.guardStall()
    this.lastTick = this.now()
  }

  /**
   * Lifeguard's local health check, done before every judgement: if the heartbeat loop has not
   * run for more than two periods, this observer was stalled (event-loop block, SIGSTOP, swap),
   * and the silence it measured says nothing about others. Whatever runs first after a stall
   * (a claim tick, an API call, the heartbeat itself) forgives that silence before judging.
   */
  private guardStall(): void {
    const now = this.now()
    if (now - this.lastTick > 2 * this.heartbeatMs) {
      this.stalls++
      this.forgiveSilence()
      this.lastTick = now
    }
  }

  /** How many stalls of this observer were detected (for metrics and tests). */
  stalls = 0

  /** Take a heartbeat's record. Returns true when it told something new (a new peer or state). */
  observe(record: PeerRecord): boolean {
    const cur = this.known.get(record.peerId)
    if (
      cur !== undefined &&
      (record.incarnation < cur.record.incarnation ||
        (record.incarnation === cur.record.incarnation && record.seq <= cur.record.seq))
    ) {
      return false
    }
    const before = cur === undefined ? undefined : this.stateOf(cur)
    const changed =
      cur === undefined ||
      before !== 'alive' ||
      cur.record.incarnation !== record.incarnation ||
      cur.record.leaving !== record.leaving ||
      cur.record.claiming !== record.claiming ||
      cur.record.synced !== record.synced
    this.known.set(record.peerId, { record, heardAt: this.now() })
    return changed
  }

  /** Peers this observer suspects or holds dead (carried in its heartbeats). */
  suspects(): string[] {
    const out: string[] = []
    for (const [id, k] of this.known) {
      const s = this.stateOf(k)
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
      if (this.stateOf(k) === 'alive' && k.record.suspects.includes(this.selfId)) out.push(id)
    }
    return out
  }

  /** After a stall of this observer: forget the silence it measured (Lifeguard). */
  forgiveSilence(): void {
    const now = this.now()
    for (const k of this.known.values()) k.heardAt = Math.max(k.heardAt, now - this.suspectMs / 2)
  }

  record(peerId: string): PeerRecord | undefined {
    return this.known.get(peerId)?.record
  }

  state(peerId: string): Liveness | undefined {
    const k = this.known.get(peerId)
    return k === undefined ? undefined : this.stateOf(k)
  }

  /** Every known peer with its state (self excluded; the caller adds its own record). */
  views(): PeerView[] {
    return [...this.known.values()].map((k) => ({ ...k.record, state: this.stateOf(k), self: false }))
  }

  /**
   * Is the lease of (holder, incarnation) live? Live while the holder is alive or suspect in
   * that same incarnation. A newer incarnation, or dead, or left, lapses it. A holder never heard
   * from is given the benefit of the doubt until this observer has listened for 2 × suspectMs.
   */
  superseded(holder: string, incarnation: number): boolean {
    const k = this.known.get(holder)
    return k !== undefined && k.record.incarnation > incarnation
  }

  leaseLive(holder: string, incarnation: number): boolean {
    const k = this.known.get(holder)
    if (k === undefined) return this.now() - this.startedAt < 2 * this.suspectMs
    if (k.record.incarnation > incarnation) return false
    const s = this.stateOf(k)
    return s === 'alive' || s === 'suspect'
  }

  private stateOf(k: Known): Liveness {
    this.guardStall()
    return judge(this.now() - k.heardAt, this.suspectMs, k.record.leaving)
  }

  get self(): string {
    return this.selfId
  }
}
