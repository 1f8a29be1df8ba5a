import { EventEmitter } from 'node:events'
import type { RankedPeer } from '../core/hrw.ts'
import { wasStalled } from '../core/liveness.ts'
import { Membership, type Transition } from '../core/membership.ts'
import type { Cancel, Clock, Log } from '../core/ports.ts'
import type { Entry } from '../core/state.ts'
import type { GossipMessage, PeerRecord } from '../core/wire.ts'
import { logFailure } from '../store/errors.ts'
import type { Replica } from '../store/replica.ts'
import type { PeerView } from './membership.ts'
import type { PullRequest, Transport, TransportHandlers } from './transport.ts'

/** Options of the mesh protocol. */
export interface MeshInit {
  name: string
  incarnation: number
  /** The daemon's HTTP API URL, announced to others. */
  apiUrl: () => string
  heartbeatMs: number
  suspectMs: number
  /** Period of anti-entropy pulls from a random peer. */
  syncIntervalMs: number
  /**
   * A daemon that may have peers (a bootstrap list, known peers, or state of its own) claims
   * nothing until it has pulled from one of them, or until none answered for this long.
   */
  syncGraceMs: number
  /** Longest wait for one anti-entropy pull (and, once connected, for the first one). */
  pullTimeoutMs: number
  /** True when the daemon starts with no state at all (a brand-new data dir). */
  firstStart: boolean
  /** How many bootstrap addresses it was given. */
  bootstrapCount: number
  /** Delay before publishing a batch of deltas, to batch many changes into one message. */
  deltaBatchMs: number
  /** The tasks this daemon runs and whether it runs ad-hoc commands, announced in heartbeats. */
  tasks?: readonly string[]
  adHoc?: boolean
  /** Its Shoal version, announced in heartbeats for operators (absent in the simulator). */
  version?: string
  logger: Log
  /** Hears every change of this daemon's judgement of a peer (logs; the simulator's checks). */
  onTransition?: (t: Transition) => void
}

/** What the mesh protocol needs from the rest of the daemon. */
export interface MeshComponents {
  replica: Replica
  transport: Transport
  clock: Clock
  /** Serves and takes output blobs (the output keeper). */
  blobs: Pick<TransportHandlers, 'serveBlob' | 'receiveBlob' | 'heldBlobs'>
  /** Capacity and load, for this daemon's heartbeats. */
  load(): { capacity: number; running: number; claiming: boolean; leaving: boolean; drained?: boolean }
}

export interface MeshEvents {
  /** Membership changed (a peer joined, left, died, came back, became synced). */
  membership: []
  /** This daemon completed its first sync. */
  synced: []
  /** A pull from a peer completed (any, not only the first). */
  pulled: []
  /** An operator's drain order for this daemon arrived (from the daemon the operator asked). */
  drain: [on: boolean, from: string]
}

const MAX_DELTA_ENTRIES = 400
const MAX_DELTA_BYTES = 768 * 1024
/** Most anti-entropy pulls a daemon runs at once. */
const MAX_PULLS_IN_FLIGHT = 4
/** Last words (pending deltas, the heartbeat saying it left) get this long to go out at stop. */
/** How long a stopping daemon lets its last words leave before it hangs up. */
const LINGER_MS = 100
const LAST_WORDS_MS = 1000

/**
 * The mesh protocol, over any transport: heartbeats and membership (the failure detector),
 * state deltas batched into gossip, anti-entropy pulls (after a connection, when a peer comes
 * back, and every syncIntervalMs with a random peer), replica pushes, and when this daemon
 * counts as synced. The daemon runs it over libp2p; the simulator over its virtual network.
 */
export class Mesh extends EventEmitter<MeshEvents> {
  /** The wall time of the last drain order obeyed (see onGossip). */
  private lastDrainOrder = 0
  readonly membership: Membership<PeerRecord>
  private readonly init: MeshInit
  private readonly c: MeshComponents
  private readonly log: Log
  private readonly peerIdStr: string
  private seq = 0
  private outbox: Entry[] = []
  private cancelOutbox: Cancel | undefined
  private cancelHeartbeat: Cancel | undefined
  private cancelSync: Cancel | undefined
  private cancelGrace: Cancel | undefined
  /** Gossip publishes not yet sent. */
  private readonly sending = new Set<Promise<void>>()
  private readonly pulling = new Set<string>()
  private synced = false
  /** The signature of the claimers list (see claimers). */
  private claimersSig = ''
  /** The claimers list as of the last heartbeat (it wakes the scheduler only when they change). */
  private claimersHeard: RankedPeer[] = []
  private claimersKey = ''
  private lastHeartbeatAt = Number.NEGATIVE_INFINITY
  /** Peers to pull from once a pull slot is free (see pull). */
  private readonly pullQueue = new Set<string>()
  private claimersList: RankedPeer[] = []
  private started = false
  private stopped = false

  constructor(init: MeshInit, components: MeshComponents, peerId: string) {
    super()
    this.init = init
    this.c = components
    this.log = init.logger
    this.peerIdStr = peerId
    this.membership = new Membership<PeerRecord>(
      peerId,
      init.suspectMs,
      init.heartbeatMs,
      () => components.clock.now(),
      (t) => {
        if (t.to === 'dead' || t.from === 'dead') this.log.info(t, 'peer state changed')
        init.onTransition?.(t)
      }
    )
  }

  get peerId(): string {
    return this.peerIdStr
  }

  get isSynced(): boolean {
    return this.synced
  }

  async start(): Promise<void> {
    const transport = this.c.transport
    await transport.start({
      gossip: (m) => this.onGossip(m),
      connected: (peer) => this.pull(peer),
      servePull: (request) => this.differing(request),
      servePush: async (entries) => {
        await this.c.replica.apply(entries, 'remote', { sync: true })
      },
      serveBlob: (sha256) => this.c.blobs.serveBlob(sha256),
      receiveBlob: (blob, source, job) => this.c.blobs.receiveBlob(blob, source, job),
      heldBlobs: (sha256s) => this.c.blobs.heldBlobs(sha256s)
    })
    this.started = true
    // Claim only once synced: a restarted daemon's state may be far behind (a job that finished
    // elsewhere looks unfinished here), so it waits for a pull from a peer. Only a brand-new
    // daemon with nobody to ask starts synced; any other waits up to syncGraceMs for an answer.
    const known = await transport.knownPeers()
    if (this.init.bootstrapCount === 0 && known === 0 && this.init.firstStart) {
      this.markSynced('a first daemon: no bootstrap, no known peers, no state')
    } else {
      this.log.info(
        { knownPeers: known, bootstrap: this.init.bootstrapCount, graceMs: this.init.syncGraceMs },
        'waiting to sync from a peer before claiming'
      )
      this.cancelGrace = this.c.clock.after(this.init.syncGraceMs, () => this.graceOver())
    }
    this.scheduleHeartbeat(this.c.clock.now())
    this.scheduleSync()
    this.log.info({ multiaddrs: transport.multiaddrs() }, 'mesh started')
  }

  /** The sync grace ran out: alone, count as synced; connected, give the first pull its time. */
  private graceOver(): void {
    if (this.synced) return
    const transport = this.c.transport
    if (transport.connectedPeers().length === 0) {
      // Not fatal: this daemon may be the first one up. The transport keeps trying, and warns
      // (saying why) if it stays cut off: see mesh/isolation.ts.
      const unreached = transport.unreachedBootstrap()
      if (unreached.length > 0)
        this.log.info(
          { unreached, afterMs: this.init.syncGraceMs },
          `no bootstrap answered yet (${unreached.join(', ')}); claiming alone and retrying`
        )
      this.markSynced(`no peer answered within ${this.init.syncGraceMs} ms`)
      return
    }
    // Connected, but the first pull is not done (a large state takes a while): wait for it, up
    // to the pull's own timeout, rather than claim from a state that may be far behind.
    this.cancelGrace = this.c.clock.after(this.init.pullTimeoutMs, () => {
      if (!this.synced) this.log.warn('connected peers did not finish a sync in time; claiming anyway')
      this.markSynced(`no sync finished within ${this.init.pullTimeoutMs} ms of connecting`)
    })
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.cancelHeartbeat?.()
    this.cancelSync?.()
    this.cancelGrace?.()
    this.cancelOutbox?.()
    if (this.started) {
      // Last words: pending deltas (hand-backs, results) and a heartbeat saying we left.
      const last = [...this.sending, ...this.flushOutbox(), this.publishHeartbeat()]
      let cancelWait: Cancel | undefined
      await Promise.race([
        Promise.all(last),
        new Promise((resolve) => {
          cancelWait = this.c.clock.after(LAST_WORDS_MS, () => resolve(undefined))
        })
      ])
      cancelWait?.()
      // A published message is queued on its streams, not yet on the wire: linger a moment
      // before hanging up, or the heartbeat saying this daemon left may die with the connection
      // (peers would then judge it dead after suspicion, not left).
      await new Promise<void>((resolve) => this.c.clock.after(LINGER_MS, resolve))
    }
    await this.c.transport.stop()
  }

  /** Queue changed registers for gossip; they go out in batches. */
  announce(entries: readonly Entry[]): void {
    if (entries.length === 0 || this.stopped) return
    this.outbox.push(...entries)
    if (this.outbox.length >= MAX_DELTA_ENTRIES) void this.flushOutbox()
    else this.cancelOutbox ??= this.c.clock.after(this.init.deltaBatchMs, () => void this.flushOutbox())
  }

  /** This daemon's own membership record. */
  selfRecord(): PeerRecord {
    const load = this.c.load()
    return {
      peerId: this.peerIdStr,
      name: this.init.name,
      incarnation: this.init.incarnation,
      seq: this.seq,
      multiaddrs: this.c.transport.multiaddrs(),
      api: this.init.apiUrl(),
      capacity: load.capacity,
      running: load.running,
      synced: this.synced,
      claiming: load.claiming,
      leaving: load.leaving,
      suspects: this.membership.suspects(),
      every: this.membership.heartbeatEvery(),
      ...(this.init.tasks !== undefined ? { tasks: [...this.init.tasks] } : {}),
      ...(this.init.adHoc !== undefined ? { adHoc: this.init.adHoc } : {}),
      ...(load.drained === true ? { drained: true } : {}),
      ...(this.init.version !== undefined ? { version: this.init.version } : {})
    }
  }

  /** Every daemon this one knows of, itself included. */
  peers(): PeerView[] {
    const self: PeerView = { ...this.selfRecord(), state: 'alive', self: true }
    return [
      self,
      ...this.membership.entries().map(({ record, state }) => ({ ...record, state, self: false }))
    ]
  }

  /**
   * Live, synced daemons that take claims (self included when synced): those that rank for
   * claims, as { id, capacity }. The same array is returned while nothing that decides it
   * changed (the membership's stamp, and this daemon's own flags), so the claim loop can skip
   * rescanning and reranking a large mesh on every scan.
   */
  claimers(): RankedPeer[] {
    const load = this.c.load()
    const selfIn = this.synced && load.claiming && !load.leaving
    const key = `${this.membership.stamp()}|${selfIn}|${load.capacity}`
    if (key === this.claimersKey) return this.claimersList
    const out: RankedPeer[] = []
    let sig = ''
    if (selfIn) out.push(rankedPeer(this.peerIdStr, load.capacity, this.init.tasks, this.init.adHoc))
    for (const { record: r, state } of this.membership.entries()) {
      if (state === 'alive' && r.synced && r.claiming && !r.leaving) {
        out.push(rankedPeer(r.peerId, r.capacity, r.tasks, r.adHoc))
        sig += `${r.peerId}:${r.capacity}:${r.adHoc ?? ''}:${r.tasks?.join('+') ?? '*'},`
      }
    }
    sig = `${selfIn}:${load.capacity}|${sig}`
    // entries() may itself report a transition: key the list by the stamp after the scan.
    this.claimersKey = `${this.membership.stamp()}|${selfIn}|${load.capacity}`
    // The table iterates in a stable order, so equal signatures mean equal lists: keep the old
    // array, so those who hold it (the claim loop's rank memo) see that nothing changed.
    if (sig !== this.claimersSig) {
      this.claimersSig = sig
      this.claimersList = out
    }
    return this.claimersList
  }

  /**
   * Push registers to a peer and wait for its synced acknowledgement (for ackReplicas).
   * Rejects on timeout or any failure.
   */
  push(peer: string, entries: readonly Entry[], timeoutMs: number): Promise<void> {
    return this.c.transport.push(peer, entries, timeoutMs)
  }

  /** Pull the registers of some jobs from a peer (before answering 404 for a job unknown here). */
  async pullJobs(peer: string, jobIds: string[], timeoutMs: number): Promise<number> {
    const state = this.c.replica.state
    const jobs: Record<string, string> = {}
    for (const id of jobIds) if (state.jobs.has(id)) jobs[id] = state.digest(id)
    return this.exchangePull(peer, { jobs, only: jobIds }, timeoutMs)
  }

  /** Pull every register of a peer's that differs here (one anti-entropy pull, awaited). */
  pullAll(peer: string, timeoutMs: number): Promise<number> {
    return this.exchangePull(peer, { jobs: this.c.replica.state.digestAll() }, timeoutMs)
  }

  /**
   * Publish pending deltas, then a heartbeat, now (after a change of this daemon's own state,
   * such as draining or having left): a peer that learns the state learns first what came
   * before it (a hand-back before the "left" that lets others claim).
   */
  heartbeatNow(): void {
    if (!this.started || this.stopped) return
    void Promise.all(this.flushOutbox())
    void this.publishHeartbeat()
  }

  /** Every register of each job whose digest differs from the puller's (or that it lacks). */
  private *differing(request: PullRequest): Generator<Entry> {
    const state = this.c.replica.state
    for (const id of request.only ?? state.jobIds()) {
      if (request.jobs[id] === state.digest(id)) continue
      yield* state.entriesOf(id)
    }
  }

  /** One pull: send our digests, merge what comes back. Resolves with the registers that changed here. */
  private async exchangePull(peer: string, request: PullRequest, timeoutMs: number): Promise<number> {
    let changed = 0
    await this.c.transport.pull(peer, request, timeoutMs, async (entries) => {
      changed += (await this.c.replica.apply(entries, 'remote')).length
    })
    return changed
  }

  private flushOutbox(): Array<Promise<void>> {
    this.cancelOutbox?.()
    this.cancelOutbox = undefined
    const sent: Array<Promise<void>> = []
    while (this.outbox.length > 0) {
      let bytes = 0
      let n = 0
      while (n < this.outbox.length && n < MAX_DELTA_ENTRIES) {
        bytes += JSON.stringify(this.outbox[n]).length
        if (n > 0 && bytes > MAX_DELTA_BYTES) break
        n++
      }
      const entries = this.outbox.splice(0, n)
      sent.push(this.publish({ t: 'delta', from: this.peerIdStr, entries }))
    }
    return sent
  }

  /** Publish; never rejects. Kept until sent, so a stop lets every last word out. */
  private publish(msg: GossipMessage): Promise<void> {
    const sent = this.c.transport.publish(msg).catch((err: unknown) => {
      this.log.debug({ err: (err as Error).message, t: msg.t }, 'publish failed')
    })
    this.sending.add(sent)
    void sent.finally(() => this.sending.delete(sent))
    return sent
  }

  private onGossip(m: GossipMessage): void {
    if (this.stopped) return
    if (m.t === 'hb') {
      if (m.peer.peerId === this.peerIdStr) return
      // First, so a pull below dials with the addresses the heartbeat gave (a dial by peer id
      // alone joins a pending one, and fails when that one knew no address).
      this.c.transport.heardOf(m.peer)
      const { changed, connected } = this.membership.observe(m.peer)
      // A peer new, back, or in a new life: its state may differ from ours in ways gossip missed.
      if (connected) this.pull(m.peer.peerId)
      if (changed) this.emit('membership')
      return
    }
    if (m.from === this.peerIdStr) return
    if (m.t === 'drain') {
      // Only the daemon named acts on it, and only on an order newer than the last it obeyed.
      if (m.target !== this.peerIdStr || m.at <= this.lastDrainOrder) return
      this.lastDrainOrder = m.at
      this.emit('drain', m.drain, m.from)
      return
    }
    this.c.replica.apply(m.entries, 'remote').catch((err: unknown) => {
      logFailure(this.log, err, 'cannot apply delta')
    })
  }

  /** This daemon was drained or undrained here: drain orders from before now change nothing. */
  drainedHere(): void {
    this.lastDrainOrder = Math.max(this.lastDrainOrder, this.c.clock.wallNow())
  }

  /** Send an operator's drain (or undrain) order to another daemon, by its peer id. */
  sendDrain(target: string, on: boolean): Promise<void> {
    return this.publish({ t: 'drain', from: this.peerIdStr, target, drain: on, at: this.c.clock.wallNow() })
  }

  private publishHeartbeat(): Promise<void> {
    this.lastHeartbeatAt = this.c.clock.now()
    this.seq++
    return this.publish({ t: 'hb', peer: this.selfRecord() })
  }

  /**
   * Drift-corrected loop every heartbeatMs: local health first (a late timer means this daemon
   * stalled: Lifeguard), then a heartbeat when one is due (every heartbeatEvery(): longer than
   * the loop in a large mesh).
   */
  private scheduleHeartbeat(expectedAt: number): void {
    const clock = this.c.clock
    const delay = Math.max(0, expectedAt - clock.now())
    this.cancelHeartbeat = clock.after(delay, () => {
      const firedAt = clock.now()
      if (wasStalled(expectedAt, firedAt, this.init.heartbeatMs)) {
        this.log.warn(
          { lateMs: Math.round(firedAt - expectedAt) },
          'this daemon stalled; forgiving peer silence'
        )
      }
      // Membership forgives the silence itself when it sees the loop ran late (guardStall).
      this.membership.tick()
      // Due within half a loop: the loop's own jitter must not skip a beat.
      if (firedAt - this.lastHeartbeatAt >= this.membership.heartbeatEvery() - this.init.heartbeatMs / 2)
        void this.publishHeartbeat()
      // Silence turns peers suspect or dead with time alone: say so when the claimers changed.
      const claimers = this.claimers()
      if (claimers !== this.claimersHeard) {
        this.claimersHeard = claimers
        this.emit('membership')
      }
      this.scheduleHeartbeat(Math.max(expectedAt + this.init.heartbeatMs, firedAt))
    })
  }

  private scheduleSync(): void {
    this.cancelSync = this.c.clock.after(this.init.syncIntervalMs, () => {
      const peers = this.c.transport.connectedPeers()
      const pick = peers[Math.floor(this.c.clock.random() * peers.length)]
      if (pick !== undefined) this.pull(pick)
      this.scheduleSync()
    })
  }

  /**
   * Pull the peer's differing registers: one pull per peer at a time, and at most
   * MAX_PULLS_IN_FLIGHT at once (a daemon that hears a thousand peers at start does not open a
   * thousand pulls); the others wait their turn, in order.
   */
  private pull(peer: string): void {
    if (this.pulling.has(peer) || !this.started || this.stopped) return
    if (this.pulling.size >= MAX_PULLS_IN_FLIGHT) {
      this.pullQueue.add(peer)
      return
    }
    this.pullQueue.delete(peer)
    this.pulling.add(peer)
    this.exchangePull(peer, { jobs: this.c.replica.state.digestAll() }, this.init.pullTimeoutMs)
      .then((changed) => {
        this.log.debug({ peer, changed }, 'pulled')
        this.markSynced(`pulled from ${peer}`)
        this.emit('pulled')
      })
      .catch((err: unknown) => this.log.debug({ peer, err: (err as Error).message }, 'pull failed'))
      .finally(() => {
        this.pulling.delete(peer)
        const next = this.pullQueue.values().next()
        if (!next.done) this.pull(next.value)
      })
  }

  private markSynced(why: string): void {
    if (this.synced || this.stopped) return
    this.synced = true
    this.cancelGrace?.()
    this.log.info({ why }, 'synced')
    this.emit('synced')
    this.emit('membership')
  }
}

/** A claimer as the claim decision ranks it: with the tasks it runs, when it said. */
function rankedPeer(
  id: string,
  capacity: number,
  tasks: readonly string[] | undefined,
  adHoc: boolean | undefined
): RankedPeer {
  return {
    id,
    capacity,
    ...(tasks !== undefined ? { tasks: new Set(tasks) } : {}),
    ...(adHoc !== undefined ? { adHoc } : {})
  }
}
