import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import { bootstrap } from '@libp2p/bootstrap'
import { gossipsub, TopicValidatorResult } from '@libp2p/gossipsub'
import { createTopicScoreParams } from '@libp2p/gossipsub/score'
import { identify } from '@libp2p/identify'
import { KEEP_ALIVE, type Libp2p, type PeerId, type PrivateKey, type Stream } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { LevelDatastore } from 'datastore-level'
import { createLibp2p } from 'libp2p'
import type { Logger } from 'pino'
import { describeSystemError, ShoalError } from '../core/errors.ts'
import { wasStalled } from '../core/liveness.ts'
import { Membership } from '../core/membership.ts'
import type { Entry } from '../core/state.ts'
import { decodeGossip, encodeMessage, type GossipMessage, type PeerRecord } from '../core/wire.ts'
import type { Replica } from '../store/replica.ts'
import type { PeerView } from './membership.ts'
import { PUSH_PROTOCOL, pullSync, pushEntries, SYNC_PROTOCOL, servePush, serveSync } from './sync.ts'

export const TOPIC_HEARTBEAT = 'shoal/1/heartbeat'
export const TOPIC_STATE = 'shoal/1/state'

/** Options of the mesh. */
export interface MeshInit {
  privateKey: PrivateKey
  /** p2p listen multiaddrs. */
  listen: string[]
  /** Multiaddrs with /p2p/<id> to dial at start. */
  bootstrap: string[]
  /** Where libp2p keeps its peer store (known peers and their addresses). */
  peerStoreDir: string
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
  /** True when the daemon starts with no state at all (a brand-new data dir). */
  firstStart: boolean
  /** Most peers this daemon dials on its own (beyond those that dial it). */
  maxDialPeers: number
  /** Delay before publishing a batch of deltas, to batch many changes into one message. */
  deltaBatchMs: number
  /** The private mesh's pre-shared key (the swarm key file's bytes); none: an open mesh. */
  swarmKey?: Uint8Array
  logger: Logger
}

/** What the mesh needs from the rest of the daemon. */
export interface MeshComponents {
  replica: Replica
  /** Capacity and load, for this daemon's heartbeats. */
  load(): { capacity: number; running: number; claiming: boolean; leaving: boolean }
}

export interface MeshEvents {
  /** Membership changed (a peer joined, left, died, came back, became synced). */
  membership: []
  /** This daemon completed its first sync. */
  synced: []
  /** A pull from a peer completed (any, not only the first). */
  pulled: []
}

/** Longest wait for one anti-entropy pull. */
const PULL_TIMEOUT_MS = 30_000
const REJOIN_MIN_MS = 1000
const REJOIN_MAX_MS = 30_000
const MAX_DELTA_ENTRIES = 400
const MAX_DELTA_BYTES = 768 * 1024

/**
 * The libp2p node and everything that travels over it: heartbeats and membership, state deltas
 * by gossip, anti-entropy pulls, and dialing the peers it learns of so the mesh never hangs on
 * its bootstrap daemon.
 */
export class Mesh extends EventEmitter<MeshEvents> {
  readonly membership: Membership<PeerRecord>
  private node: Libp2p<{ pubsub: ReturnType<ReturnType<typeof gossipsub>> }> | undefined
  private datastore: LevelDatastore | undefined
  private readonly init: MeshInit
  private readonly components: MeshComponents
  private readonly log: Logger
  private readonly peerIdStr: string
  private seq = 0
  private outbox: Entry[] = []
  private outboxTimer: NodeJS.Timeout | undefined
  private heartbeatTimer: NodeJS.Timeout | undefined
  private syncTimer: NodeJS.Timeout | undefined
  private graceTimer: NodeJS.Timeout | undefined
  private rejoinTimer: NodeJS.Timeout | undefined
  /** Gossip publishes not yet sent. */
  private readonly sending = new Set<Promise<void>>()
  /** True while this daemon has no connection and its bootstrap dials fail (warned once). */
  private isolated = false
  private readonly pulling = new Set<string>()
  private readonly lastDial = new Map<string, number>()
  private synced = false
  /** Gossip messages rejected by the topic validators (they cost the sender score). */
  rejected = 0
  private readonly blocked = new Set<string>()
  private stopped = false
  private readonly decoded = new WeakMap<Uint8Array, GossipMessage>()

  constructor(init: MeshInit, components: MeshComponents, peerId: string) {
    super()
    this.init = init
    this.components = components
    this.log = init.logger
    this.peerIdStr = peerId
    this.membership = new Membership<PeerRecord>(
      peerId,
      init.suspectMs,
      init.heartbeatMs,
      () => performance.now(),
      (t) => {
        if (t.to === 'dead' || t.from === 'dead') this.log.info(t, 'peer state changed')
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
    this.datastore = new LevelDatastore(this.init.peerStoreDir)
    await this.datastore.open()
    try {
      this.node = await createLibp2p({
        privateKey: this.init.privateKey,
        datastore: this.datastore,
        addresses: { listen: this.init.listen },
        transports: [tcp()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        peerDiscovery:
          this.init.bootstrap.length > 0 ? [bootstrap({ list: this.init.bootstrap, timeout: 0 })] : [],
        ...(this.init.swarmKey !== undefined
          ? { connectionProtector: preSharedKey({ psk: this.init.swarmKey }) }
          : {}),
        connectionManager: {
          addressDialTimeout: 3000,
          reconnectRetries: 10,
          reconnectRetryInterval: 500,
          maxConnections: 512,
          maxIncomingPendingConnections: 32
        },
        // Test-only partition switch (see setBlocked); with nothing blocked it denies nothing.
        connectionGater: {
          denyDialPeer: (p) => this.blocked.has(p.toString()),
          denyOutboundEncryptedConnection: (p) => this.blocked.has(p.toString()),
          denyInboundEncryptedConnection: (p) => this.blocked.has(p.toString())
        },
        services: {
          identify: identify(),
          ping: ping(),
          pubsub: gossipsub({
            allowPublishToZeroTopicPeers: true,
            emitSelf: false,
            globalSignaturePolicy: 'StrictSign',
            maxInboundDataLength: 4 * 1024 * 1024,
            // Invalid messages cost the sender (P4, quadratic): a peer that floods junk soon falls
            // below the gossip, publish and graylist thresholds. Nothing else is scored, so quiet
            // honest peers keep a score of 0.
            scoreParams: {
              topics: Object.fromEntries(
                [TOPIC_HEARTBEAT, TOPIC_STATE].map((t) => [
                  t,
                  createTopicScoreParams({
                    topicWeight: 1,
                    timeInMeshWeight: 0,
                    firstMessageDeliveriesWeight: 0,
                    meshMessageDeliveriesWeight: 0,
                    meshFailurePenaltyWeight: 0,
                    invalidMessageDeliveriesWeight: -10,
                    invalidMessageDeliveriesDecay: 0.9
                  })
                ])
              )
            }
          })
        }
      })
    } catch (err) {
      await this.datastore.close()
      throw listenError(err)
    }
    const node = this.node
    const pubsub = node.services.pubsub
    for (const topic of [TOPIC_HEARTBEAT, TOPIC_STATE]) {
      pubsub.topicValidators.set(topic, (_from, msg) => {
        try {
          const m = decodeGossip(msg.data)
          if ((topic === TOPIC_HEARTBEAT) !== (m.t === 'hb')) return TopicValidatorResult.Reject
          this.decoded.set(msg.data, m)
          return TopicValidatorResult.Accept
        } catch (err) {
          this.rejected++
          this.log.debug({ err: (err as Error).message, topic }, 'rejected gossip')
          return TopicValidatorResult.Reject
        }
      })
      pubsub.subscribe(topic)
    }
    pubsub.addEventListener('message', (evt) => {
      const m = this.decoded.get(evt.detail.data) ?? safeDecode(evt.detail.data)
      if (m !== undefined) this.onGossip(m)
    })
    await node.handle(
      SYNC_PROTOCOL,
      async (stream) => {
        try {
          await serveSync(stream, this.components.replica)
        } catch (err) {
          this.log.debug({ err: (err as Error).message }, 'sync serve failed')
          stream.abort(err as Error)
        }
      },
      { maxInboundStreams: 8 }
    )
    await node.handle(
      PUSH_PROTOCOL,
      async (stream) => {
        try {
          await servePush(stream, this.components.replica)
        } catch (err) {
          this.log.debug({ err: (err as Error).message }, 'push serve failed')
          stream.abort(err as Error)
        }
      },
      { maxInboundStreams: 32 }
    )
    node.addEventListener('peer:connect', (evt) => {
      const id = evt.detail
      void this.keepAlive(id)
      this.pull(id.toString())
    })
    // Claim only once synced: a restarted daemon's state may be far behind (a job that finished
    // elsewhere looks unfinished here), so it waits for a pull from a peer. Only a brand-new
    // daemon with nobody to ask starts synced; any other waits up to syncGraceMs for an answer.
    const known = (await node.peerStore.all()).filter((p) => !p.id.equals(node.peerId)).length
    if (this.init.bootstrap.length === 0 && known === 0 && this.init.firstStart) {
      this.markSynced('a first daemon: no bootstrap, no known peers, no state')
    } else {
      this.log.info(
        { knownPeers: known, bootstrap: this.init.bootstrap.length, graceMs: this.init.syncGraceMs },
        'waiting to sync from a peer before claiming'
      )
      this.graceTimer = setTimeout(() => {
        // Not fatal: this daemon may be the first one up. Say so once, and keep redialing.
        const unreached = this.unreachedBootstrap()
        if (unreached.length > 0 && node.getConnections().length === 0) {
          this.isolated = true
          this.log.warn(
            { bootstrap: unreached, afterMs: this.init.syncGraceMs },
            `cannot reach bootstrap ${unreached.join(', ')}; running alone and retrying`
          )
        }
        if (node.getConnections().length === 0) {
          this.markSynced(`no peer answered within ${this.init.syncGraceMs} ms`)
          return
        }
        // Connected, but the first pull is not done (a large state takes a while): wait for it,
        // up to the pull's own timeout, rather than claim from a state that may be far behind.
        this.graceTimer = setTimeout(() => {
          if (!this.synced) this.log.warn('connected peers did not finish a sync in time; claiming anyway')
          this.markSynced(`no sync finished within ${PULL_TIMEOUT_MS} ms of connecting`)
        }, PULL_TIMEOUT_MS)
      }, this.init.syncGraceMs)
    }
    this.scheduleHeartbeat(performance.now())
    this.scheduleSync()
    this.scheduleRejoin()
    this.log.info({ multiaddrs: this.multiaddrs() }, 'mesh started')
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearTimeout(this.heartbeatTimer)
    clearTimeout(this.syncTimer)
    clearTimeout(this.graceTimer)
    clearTimeout(this.rejoinTimer)
    clearTimeout(this.outboxTimer)
    const errors: unknown[] = []
    // Last words: pending deltas (hand-backs, results) and a heartbeat saying we left.
    const last = [...this.sending, ...this.flushOutbox(), this.publishHeartbeat()]
    let lastTimer: NodeJS.Timeout | undefined
    await Promise.race([
      Promise.all(last),
      new Promise((resolve) => {
        lastTimer = setTimeout(resolve, 1000)
      })
    ])
    clearTimeout(lastTimer)
    for (const step of [() => this.node?.stop(), () => this.datastore?.close()]) {
      try {
        await step()
      } catch (err) {
        errors.push(err)
      }
    }
    if (errors.length > 0) this.log.warn({ errors: errors.map(String) }, 'mesh stop had errors')
  }

  multiaddrs(): string[] {
    return this.node?.getMultiaddrs().map(String) ?? []
  }

  /** Number of open connections (for tests and /v1/health). */
  connectionCount(): number {
    return this.node?.getConnections().length ?? 0
  }

  /** Queue changed registers for gossip; they go out in batches. */
  announce(entries: readonly Entry[]): void {
    if (entries.length === 0 || this.stopped) return
    this.outbox.push(...entries)
    if (this.outbox.length >= MAX_DELTA_ENTRIES) void this.flushOutbox()
    else this.outboxTimer ??= setTimeout(() => void this.flushOutbox(), this.init.deltaBatchMs)
  }

  /** This daemon's own membership record. */
  selfRecord(): PeerRecord {
    const load = this.components.load()
    return {
      peerId: this.peerIdStr,
      name: this.init.name,
      incarnation: this.init.incarnation,
      seq: this.seq,
      multiaddrs: this.multiaddrs(),
      api: this.init.apiUrl(),
      capacity: load.capacity,
      running: load.running,
      synced: this.synced,
      claiming: load.claiming,
      leaving: load.leaving,
      suspects: this.membership.suspects()
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

  /** Live, synced daemons that take claims (self included when synced): those that rank for claims. */
  claimers(): PeerRecord[] {
    return this.peers().filter((p) => p.state === 'alive' && p.synced && p.claiming && !p.leaving)
  }

  /**
   * Push registers to a peer and wait for its synced acknowledgement (for ackReplicas).
   * Rejects on timeout or any failure.
   */
  async push(peer: string, entries: readonly Entry[], timeoutMs: number): Promise<void> {
    await this.exchange(peer, PUSH_PROTOCOL, timeoutMs, (stream) => pushEntries(stream, entries))
  }

  /** Pull the registers of some jobs from a peer (before answering 404 for a job unknown here). */
  async pullJobs(peer: string, jobIds: string[], timeoutMs: number): Promise<number> {
    return this.exchange(peer, SYNC_PROTOCOL, timeoutMs, (stream) =>
      pullSync(stream, this.components.replica, jobIds)
    )
  }

  /**
   * One exchange with a peer on a protocol stream, bounded as a whole: past `timeoutMs` (dial
   * included) it rejects and resets the stream, whatever the peer does. An abort signal given to
   * the dial alone was not enough: a timeout that fired while the dial finished was never heard,
   * and a push to a peer whose disk had just failed then waited forever (a submit hung).
   */
  private async exchange<T>(
    peer: string,
    protocol: string,
    timeoutMs: number,
    run: (stream: Stream) => Promise<T>
  ): Promise<T> {
    const node = this.node
    if (node === undefined) throw new Error('mesh not started')
    const signal = AbortSignal.timeout(Math.max(1, Math.floor(timeoutMs)))
    const stream = await node.dialProtocol(peerIdFromString(peer), protocol, { signal })
    let onAbort: (() => void) | undefined
    const aborted = new Promise<never>((_, reject) => {
      onAbort = (): void => {
        const err = new Error(`${protocol} with ${peer} timed out after ${Math.floor(timeoutMs)} ms`)
        stream.abort(err)
        reject(err)
      }
      if (signal.aborted) onAbort()
      else signal.addEventListener('abort', onAbort, { once: true })
    })
    try {
      return await Promise.race([run(stream), aborted])
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
      aborted.catch(() => undefined)
    }
  }

  /**
   * Test-only partition switch: refuse connections to and from these peers and hang up on them.
   * Reached only through the API's test hooks, which are off unless `testHooks` is set.
   */
  async setBlocked(peerIds: readonly string[]): Promise<void> {
    this.blocked.clear()
    for (const id of peerIds) this.blocked.add(id)
    const node = this.node
    if (node === undefined) return
    await Promise.all(
      node
        .getConnections()
        .filter((c) => this.blocked.has(c.remotePeer.toString()))
        .map((c) => c.close().catch(() => c.abort(new Error('partitioned'))))
    )
  }

  /**
   * Publish pending deltas, then a heartbeat, now (after a change of this daemon's own state,
   * such as draining or having left): a peer that learns the state learns first what came
   * before it (a hand-back before the "left" that lets others claim).
   */
  heartbeatNow(): void {
    if (this.node === undefined || this.stopped) return
    void Promise.all(this.flushOutbox())
    void this.publishHeartbeat()
  }

  private flushOutbox(): Array<Promise<void>> {
    clearTimeout(this.outboxTimer)
    this.outboxTimer = undefined
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
      sent.push(this.publish(TOPIC_STATE, { t: 'delta', from: this.peerIdStr, entries }))
    }
    return sent
  }

  /** Publish; never rejects (a lost publish is repaired by anti-entropy). */
  private publish(topic: string, msg: GossipMessage): Promise<void> {
    const pubsub = this.node?.services.pubsub
    if (pubsub === undefined) return Promise.resolve()
    const sent = pubsub.publish(topic, encodeMessage(msg)).then(
      () => undefined,
      (err: unknown) => {
        this.log.debug({ err: (err as Error).message, topic }, 'publish failed')
      }
    )
    // Kept until sent, so a stop lets every last word out (a hand-back published just before).
    this.sending.add(sent)
    void sent.finally(() => this.sending.delete(sent))
    return sent
  }

  private onGossip(m: GossipMessage): void {
    if (m.t === 'hb') {
      if (m.peer.peerId === this.peerIdStr) return
      if (this.membership.observe(m.peer).changed) this.emit('membership')
      this.maybeDial(m.peer)
      return
    }
    if (m.from === this.peerIdStr) return
    this.components.replica.apply(m.entries, 'remote').catch((err: unknown) => {
      this.log.error({ err }, 'cannot apply delta')
    })
  }

  private publishHeartbeat(): Promise<void> {
    this.seq++
    return this.publish(TOPIC_HEARTBEAT, { t: 'hb', peer: this.selfRecord() })
  }

  /** Drift-corrected heartbeat loop; a late timer means this daemon stalled (Lifeguard). */
  private scheduleHeartbeat(expectedAt: number): void {
    const delay = Math.max(0, expectedAt - performance.now())
    this.heartbeatTimer = setTimeout(() => {
      const firedAt = performance.now()
      if (wasStalled(expectedAt, firedAt, this.init.heartbeatMs)) {
        this.log.warn(
          { lateMs: Math.round(firedAt - expectedAt) },
          'this daemon stalled; forgiving peer silence'
        )
      }
      // Membership forgives the silence itself when it sees the loop ran late (guardStall).
      this.membership.tick()
      void this.publishHeartbeat()
      this.emit('membership')
      this.scheduleHeartbeat(Math.max(expectedAt + this.init.heartbeatMs, firedAt))
    }, delay)
  }

  private scheduleSync(): void {
    this.syncTimer = setTimeout(() => {
      const peers = this.node?.getPeers() ?? []
      const pick = peers[Math.floor(Math.random() * peers.length)]
      if (pick !== undefined) this.pull(pick.toString())
      this.scheduleSync()
    }, this.init.syncIntervalMs)
  }

  /** Bootstrap addresses whose daemon this one is not connected to. */
  private unreachedBootstrap(): string[] {
    const node = this.node
    if (node === undefined) return []
    return this.init.bootstrap.filter((addr) => {
      const id = multiaddr(addr)
        .getComponents()
        .findLast((c) => c.name === 'p2p')?.value
      return (
        id !== undefined && id !== this.peerIdStr && node.getConnections(peerIdFromString(id)).length === 0
      )
    })
  }

  /**
   * Stay in the mesh: libp2p's bootstrap dials once, and a dial that fails (a bootstrap daemon
   * not up yet, or too loaded to finish a handshake in time) would leave this daemon alone for
   * good, seeing nobody and seen by nobody. While it has no connection at all, it dials its
   * bootstrap addresses again, backing off up to 30 s (the grace timer says so, once).
   */
  private scheduleRejoin(waitMs = REJOIN_MIN_MS): void {
    if (this.stopped || this.init.bootstrap.length === 0) return
    this.rejoinTimer = setTimeout(() => {
      const node = this.node
      if (node === undefined || this.stopped) return
      if (node.getConnections().length > 0) {
        if (this.isolated) this.log.info('connected again')
        this.isolated = false
        this.scheduleRejoin(REJOIN_MIN_MS)
        return
      }
      const dials = this.init.bootstrap.map((a) =>
        node.dial(multiaddr(a), { signal: AbortSignal.timeout(Math.max(5000, waitMs)) })
      )
      Promise.any(dials).then(
        () => {
          if (this.isolated) this.log.info('reached a bootstrap peer')
          this.isolated = false
          this.scheduleRejoin(REJOIN_MIN_MS)
        },
        (err: unknown) => {
          const why =
            err instanceof AggregateError
              ? err.errors.map((e) => String((e as Error).message))
              : [String(err)]
          this.log.debug({ bootstrap: this.init.bootstrap, errors: why }, 'bootstrap redial failed')
          this.scheduleRejoin(Math.min(REJOIN_MAX_MS, waitMs * 2))
        }
      )
    }, waitMs)
  }

  /** Pull the peer's differing registers (one pull per peer at a time). */
  private pull(peer: string): void {
    if (this.pulling.has(peer) || this.node === undefined || this.stopped) return
    this.pulling.add(peer)
    const run = async (): Promise<void> => {
      const changed = await this.exchange(peer, SYNC_PROTOCOL, PULL_TIMEOUT_MS, (stream) =>
        pullSync(stream, this.components.replica)
      )
      this.log.debug({ peer, changed }, 'pulled')
      this.markSynced(`pulled from ${peer}`)
      this.emit('pulled')
    }
    run()
      .catch((err: unknown) => this.log.debug({ peer, err: (err as Error).message }, 'pull failed'))
      .finally(() => this.pulling.delete(peer))
  }

  private markSynced(why: string): void {
    if (this.synced) return
    this.synced = true
    this.log.info({ why }, 'synced')
    this.emit('synced')
    this.emit('membership')
  }

  private async keepAlive(id: PeerId): Promise<void> {
    try {
      await this.node?.peerStore.merge(id, { tags: { [KEEP_ALIVE]: { value: 1 } } })
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'cannot tag peer')
    }
  }

  /**
   * Dial a daemon we heard of but are not connected to, so the mesh does not depend on the
   * daemon everyone bootstrapped from. Bounded: at most maxDialPeers connections of our own.
   */
  private maybeDial(record: PeerRecord): void {
    const node = this.node
    if (node === undefined || this.stopped) return
    const id = peerIdFromString(record.peerId)
    if (node.getConnections(id).length > 0) return
    if (node.getConnections().length >= this.init.maxDialPeers) return
    const now = performance.now()
    if (now - (this.lastDial.get(record.peerId) ?? -Infinity) < 5000) return
    this.lastDial.set(record.peerId, now)
    const addrs = record.multiaddrs
      .map((a) => multiaddr(a))
      .filter((a) => !a.toString().includes('/ip4/0.0.0.0/'))
    if (addrs.length === 0) return
    node.dial(addrs, { signal: AbortSignal.timeout(5000) }).catch((err: unknown) => {
      this.log.debug({ peer: record.peerId, err: (err as Error).message }, 'dial failed')
    })
  }
}

/**
 * libp2p reports a port it cannot bind as one multi-line error that advises libp2p settings
 * Shoal does not expose; turn it into one line naming the address and the cause.
 */
function listenError(err: unknown): unknown {
  const e = err as Error
  if (e?.name !== 'UnsupportedListenAddressesError') return err
  const failed = [...String(e.message).matchAll(/^\s*(\/\S+): (.*)$/gm)].map(
    ([, addr, cause]) => `${addr}: ${describeSystemError(new Error(cause))}`
  )
  return new ShoalError(
    'STARTUP_FAILED',
    `listen: cannot listen on ${failed.length > 0 ? failed.join('; ') : 'the listen addresses'}`,
    { cause: err }
  )
}

function safeDecode(data: Uint8Array): GossipMessage | undefined {
  try {
    return decodeGossip(data)
  } catch {
    return undefined
  }
}
