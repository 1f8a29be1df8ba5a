import { connect } from 'node:net'
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
import type { BlobRef } from '../core/ports.ts'
import type { Entry } from '../core/state.ts'
import { decodeGossip, encodeMessage, type GossipMessage, type PeerRecord } from '../core/wire.ts'
import {
  askHeldStream,
  BLOB_PROTOCOL,
  fetchBlobStream,
  sendBlobStream,
  serveBlobStream
} from './blob-protocol.ts'
import { type DialError, explainDialFailure, Isolation, type TcpProbe } from './isolation.ts'
import { PUSH_PROTOCOL, pullSync, pushEntries, SYNC_PROTOCOL, servePush, serveSync } from './sync.ts'
import type { PullRequest, Transport, TransportHandlers } from './transport.ts'

export const TOPIC_HEARTBEAT = 'shoal/1/heartbeat'
export const TOPIC_STATE = 'shoal/1/state'

/** Options of the libp2p transport. */
export interface Libp2pInit {
  privateKey: PrivateKey
  /** p2p listen multiaddrs. */
  listen: string[]
  /** Multiaddrs with /p2p/<id> to dial at start. */
  bootstrap: string[]
  /** Where libp2p keeps its peer store (known peers and their addresses). */
  peerStoreDir: string
  /** Most peers this daemon dials on its own (beyond those that dial it). */
  maxDialPeers: number
  /** The private mesh's pre-shared key (the swarm key file's bytes); none: an open mesh. */
  swarmKey?: Uint8Array
  /** No connection this long, with somebody to reach: warn and report isolated (see isolation.ts). */
  isolatedAfterMs?: number
  logger: Logger
}

/** A blob transfer served here fails after this long without progress. */
const BLOB_IDLE_MS = 30_000
const REJOIN_MIN_MS = 1000
const REJOIN_MAX_MS = 30_000
/** How long a TCP probe of a bootstrap address waits (to tell a wrong swarm key from a dead host). */
const PROBE_MS = 3000

/**
 * The mesh's transport over libp2p: TCP, Noise, yamux, gossipsub for heartbeats and deltas,
 * length-prefixed streams for pulls and pushes, a connection gater for tests' partitions, and
 * the dialing that keeps this daemon connected (bootstrap redials, peers heard of).
 */
export class Libp2pTransport implements Transport {
  private node: Libp2p<{ pubsub: ReturnType<ReturnType<typeof gossipsub>> }> | undefined
  private datastore: LevelDatastore | undefined
  private readonly init: Libp2pInit
  private readonly log: Logger
  private readonly peerIdStr: string
  private rejoinTimer: NodeJS.Timeout | undefined
  private isolationTimer: NodeJS.Timeout | undefined
  private readonly isolation: Isolation
  private readonly lastDial = new Map<string, number>()
  /** Gossip messages rejected by the topic validators (they cost the sender score). */
  rejected = 0
  private readonly blocked = new Set<string>()
  private stopped = false
  private readonly decoded = new WeakMap<Uint8Array, GossipMessage>()

  constructor(init: Libp2pInit, peerId: string) {
    this.init = init
    this.log = init.logger
    this.peerIdStr = peerId
    this.isolation = new Isolation(init.bootstrap, init.isolatedAfterMs ?? 10_000, performance.now())
  }

  /** Why this daemon thinks it is cut off from its mesh, or undefined when it is not. */
  get isolatedReason(): string | undefined {
    return this.isolation.reason
  }

  async start(handlers: TransportHandlers): Promise<void> {
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
          // A daemon speaks only for itself: the record or delta must name the message's signer
          // (StrictSign), or one member could invent peers and stretch everyone's heartbeats.
          const signer = msg.type === 'signed' ? msg.from.toString() : undefined
          if ((m.t === 'hb' ? m.peer.peerId : m.from) !== signer) {
            this.rejected++
            return TopicValidatorResult.Reject
          }
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
      if (m !== undefined) handlers.gossip(m)
    })
    await node.handle(
      SYNC_PROTOCOL,
      async (stream) => {
        try {
          await serveSync(stream, handlers.servePull)
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
          await servePush(stream, handlers.servePush)
        } catch (err) {
          this.log.debug({ err: (err as Error).message }, 'push serve failed')
          stream.abort(err as Error)
        }
      },
      { maxInboundStreams: 32 }
    )
    await node.handle(
      BLOB_PROTOCOL,
      async (stream) => {
        try {
          await serveBlobStream(stream, handlers, BLOB_IDLE_MS)
        } catch (err) {
          this.log.debug({ err: (err as Error).message }, 'blob serve failed')
          stream.abort(err as Error)
        }
      },
      { maxInboundStreams: 16 }
    )
    node.addEventListener('peer:connect', (evt) => {
      const id = evt.detail
      this.isolation.connected()
      void this.keepAlive(id)
      handlers.connected(id.toString())
    })
    node.addEventListener('peer:disconnect', (evt) => {
      if (node.getConnections().length === 0) this.isolation.lostAll(evt.detail.toString(), performance.now())
    })
    this.scheduleRejoin()
    this.isolationTimer = setInterval(() => this.checkIsolation(), 1000)
  }

  private checkIsolation(): void {
    // The connection count is the truth: events can mislead (a duplicate connection closed while
    // the other one stays makes a peer:disconnect with no peer:connect after it).
    if ((this.node?.getConnections().length ?? 0) > 0) this.isolation.connected()
    const change = this.isolation.check(performance.now())
    if (change?.kind === 'isolated')
      this.log.warn(
        { isolated: true, bootstrap: change.bootstrap, reason: change.reason },
        `isolated: ${change.reason}`
      )
    else if (change?.kind === 'rejoined') this.log.info('connected again: no longer isolated')
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearTimeout(this.rejoinTimer)
    clearInterval(this.isolationTimer)
    const errors: unknown[] = []
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

  connectedPeers(): string[] {
    return this.node?.getPeers().map(String) ?? []
  }

  async knownPeers(): Promise<number> {
    const node = this.node
    if (node === undefined) return 0
    return (await node.peerStore.all()).filter((p) => !p.id.equals(node.peerId)).length
  }

  publish(msg: GossipMessage): Promise<void> {
    const pubsub = this.node?.services.pubsub
    if (pubsub === undefined) return Promise.resolve()
    return pubsub
      .publish(msg.t === 'hb' ? TOPIC_HEARTBEAT : TOPIC_STATE, encodeMessage(msg))
      .then(() => undefined)
  }

  async push(peer: string, entries: readonly Entry[], timeoutMs: number): Promise<void> {
    await this.exchange(peer, PUSH_PROTOCOL, timeoutMs, (stream) => pushEntries(stream, entries))
  }

  async pull(
    peer: string,
    request: PullRequest,
    timeoutMs: number,
    accept: (entries: readonly Entry[]) => Promise<void>
  ): Promise<void> {
    await this.exchange(peer, SYNC_PROTOCOL, timeoutMs, (stream) => pullSync(stream, request, accept))
  }

  async *fetchBlob(peer: string, sha256: string, idleMs: number): AsyncIterable<Uint8Array> {
    yield* fetchBlobStream(await this.dialBlob(peer, idleMs), sha256, idleMs)
  }

  async sendBlob(
    peer: string,
    blob: BlobRef,
    source: AsyncIterable<Uint8Array>,
    idleMs: number,
    job?: string
  ): Promise<void> {
    await sendBlobStream(await this.dialBlob(peer, idleMs), blob, source, idleMs, job)
  }

  async blobsHeld(peer: string, sha256s: readonly string[], timeoutMs: number): Promise<string[]> {
    return askHeldStream(await this.dialBlob(peer, timeoutMs), sha256s, timeoutMs)
  }

  private dialBlob(peer: string, timeoutMs: number): Promise<Stream> {
    const node = this.node
    if (node === undefined) throw new Error('mesh not started')
    return node.dialProtocol(peerIdFromString(peer), BLOB_PROTOCOL, {
      signal: AbortSignal.timeout(Math.max(1, Math.floor(timeoutMs)))
    })
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

  /** Bootstrap addresses whose daemon this one is not connected to. */
  unreachedBootstrap(): string[] {
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
   * bootstrap addresses again, backing off up to 30 s.
   */
  private scheduleRejoin(waitMs = REJOIN_MIN_MS): void {
    if (this.stopped || this.init.bootstrap.length === 0) return
    this.rejoinTimer = setTimeout(() => {
      const node = this.node
      if (node === undefined || this.stopped) return
      if (node.getConnections().length > 0) {
        this.scheduleRejoin(REJOIN_MIN_MS)
        return
      }
      // Each failure is explained (for the isolation warning) before the next round is planned.
      const dials = this.init.bootstrap.map((a) =>
        node
          .dial(multiaddr(a), { signal: AbortSignal.timeout(Math.max(5000, waitMs)) })
          .catch(async (err) => {
            this.isolation.dialFailed(a, await this.explain(a, err))
            throw err
          })
      )
      Promise.any(dials).then(
        () => this.scheduleRejoin(REJOIN_MIN_MS),
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

  /**
   * Why a dial of a bootstrap address failed, in words. libp2p reports a wrong swarm key as a
   * timeout or a reset, like a dead host; a plain TCP connect to the same address tells them
   * apart (it connects when a daemon listens there).
   */
  private async explain(addr: string, err: unknown): Promise<string> {
    const e = err as DialError
    const code = e.code ?? /\b(E[A-Z]{4,})\b/.exec(String(e.message))?.[1]
    const plain = code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH'
    return explainDialFailure(e, plain ? undefined : await probeTcp(addr), this.init.swarmKey !== undefined)
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
  heardOf(record: PeerRecord): void {
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

/** A plain TCP connect to a multiaddr's host and port, closed at once: what answers there? */
function probeTcp(addr: string): Promise<TcpProbe | undefined> {
  const c = multiaddr(addr).getComponents()
  const host = c.find((x) => /^(ip4|ip6|dns|dns4|dns6)$/.test(x.name))?.value
  const port = Number(c.find((x) => x.name === 'tcp')?.value)
  if (host === undefined || !Number.isInteger(port)) return Promise.resolve(undefined)
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: PROBE_MS })
    const done = (r: TcpProbe): void => {
      socket.destroy()
      resolve(r)
    }
    socket.once('connect', () => done('connected'))
    socket.once('timeout', () => done('timeout'))
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(
        err.code === 'ECONNREFUSED'
          ? 'refused'
          : err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH'
            ? 'unreachable'
            : 'failed'
      )
    )
  })
}

function safeDecode(data: Uint8Array): GossipMessage | undefined {
  try {
    return decodeGossip(data)
  } catch {
    return undefined
  }
}
