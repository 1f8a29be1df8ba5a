import type { BlobRef } from '../core/ports.ts'
import type { Entry } from '../core/state.ts'
import type { GossipMessage } from '../core/wire.ts'
import type { PullRequest } from '../mesh/transport.ts'
import type { VirtualClock } from './clock.ts'
import type { Random } from './random.ts'

/**
 * What travels between virtual hosts: the mesh protocol's gossip, and the frames of its pull and
 * push exchanges and blob transfers (one message per direction; the daemon streams them in frames). `refused`
 * stands for a dial that failed at once because nobody listens at the other end.
 */
export type Message =
  | { t: 'gossip'; from: string; msg: GossipMessage }
  | { t: 'pull'; from: string; req: number; request: PullRequest }
  | { t: 'pulled'; from: string; req: number; entries: readonly Entry[] }
  | { t: 'push'; from: string; req: number; entries: readonly Entry[] }
  | { t: 'ack'; from: string; req: number }
  | { t: 'blob-get'; from: string; req: number; sha256: string }
  | { t: 'blob'; from: string; req: number; chunks: Uint8Array[] | null }
  | { t: 'blob-put'; from: string; req: number; blob: BlobRef; chunks: Uint8Array[]; job?: string }
  | { t: 'blob-has'; from: string; req: number; sha256s: readonly string[] }
  | { t: 'blob-held'; from: string; req: number; sha256s: string[] }
  | { t: 'refused'; from: string; req: number }

/** Per-message faults of the fake network. Reordering falls out of independent random delays. */
export interface NetworkFaults {
  /** Probability that a message is lost. */
  drop: number
  /** Probability that a message is delivered twice. */
  duplicate: number
  minLatencyMs: number
  maxLatencyMs: number
  /** Probability of a much slower delivery (a congested link, a retransmit). */
  slowChance: number
  slowMaxMs: number
}

export interface NetworkStats {
  sent: number
  delivered: number
  dropped: number
  duplicated: number
  /** Arrived where no daemon was running. */
  undeliverable: number
}

/** Hands a message to its addressee; false when nobody runs there. */
export type Deliver = (to: string, msg: Message) => boolean

/**
 * The fake network. Every message is dropped, delayed and duplicated on its own dice; a
 * partition assigns daemons to sides and loses every message between sides, including those
 * already in flight when it starts (checked again at delivery).
 */
export class Network {
  faults: NetworkFaults
  readonly stats: NetworkStats = { sent: 0, delivered: 0, dropped: 0, duplicated: 0, undeliverable: 0 }
  private side = new Map<string, number>()
  private readonly clock: VirtualClock
  private readonly rng: Random
  private readonly deliver: Deliver

  constructor(clock: VirtualClock, rng: Random, faults: NetworkFaults, deliver: Deliver) {
    this.clock = clock
    this.rng = rng
    this.faults = faults
    this.deliver = deliver
  }

  /** Split the daemons into sides that cannot talk to each other (daemons not listed: side 0). */
  partition(sides: ReadonlyArray<readonly string[]>): void {
    this.side = new Map()
    sides.forEach((ids, i) => {
      for (const id of ids) this.side.set(id, i)
    })
  }

  heal(): void {
    this.side = new Map()
  }

  get partitioned(): boolean {
    return this.side.size > 0
  }

  canTalk(a: string, b: string): boolean {
    return (this.side.get(a) ?? 0) === (this.side.get(b) ?? 0)
  }

  send(from: string, to: string, msg: Message): void {
    this.stats.sent++
    const f = this.faults
    if (!this.canTalk(from, to) || this.rng.chance(f.drop)) {
      this.stats.dropped++
      return
    }
    this.schedule(from, to, msg)
    if (this.rng.chance(f.duplicate)) {
      this.stats.duplicated++
      this.schedule(from, to, msg)
    }
  }

  private schedule(from: string, to: string, msg: Message): void {
    const f = this.faults
    let delay = this.rng.between(f.minLatencyMs, f.maxLatencyMs)
    if (this.rng.chance(f.slowChance)) delay += this.rng.between(0, f.slowMaxMs)
    this.clock.after(delay, () => {
      if (!this.canTalk(from, to)) {
        this.stats.dropped++
        return
      }
      if (this.deliver(to, msg)) this.stats.delivered++
      else this.stats.undeliverable++
    })
  }
}
