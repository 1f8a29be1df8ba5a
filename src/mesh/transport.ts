import type { BlobRef } from '../core/ports.ts'
import type { Entry } from '../core/state.ts'
import type { GossipMessage, PeerRecord } from '../core/wire.ts'

/** What a pull asks for: the puller's digest of every job (or of `only` those jobs). */
export interface PullRequest {
  jobs: Record<string, string>
  only?: string[]
}

/** What the mesh protocol answers on the transport's behalf. */
export interface TransportHandlers {
  /** A gossip message arrived (validated and decoded), from another daemon. */
  gossip(msg: GossipMessage): void
  /** A connection to a peer opened. */
  connected(peer: string): void
  /** Serve a pull: the registers the puller lacks or holds otherwise. */
  servePull(request: PullRequest): Iterable<Entry>
  /** Serve a push: resolves once the registers are merged and synced here (then the pusher gets its ack). */
  servePush(entries: readonly Entry[]): Promise<void>
  /** Serve a blob fetch: its size and bytes, or undefined when it is not held here. */
  serveBlob(sha256: string): Promise<{ bytes: number; source: AsyncIterable<Uint8Array> } | undefined>
  /**
   * Take a blob a peer sends: resolves once it is durable here, checked against its name. `job`:
   * the sender is a runner securing that job's output before recording its success.
   */
  receiveBlob(blob: BlobRef, source: AsyncIterable<Uint8Array>, job?: string): Promise<void>
  /** Which of these blobs are held here. */
  heldBlobs(sha256s: readonly string[]): Promise<string[]>
}

/**
 * How the mesh protocol reaches other daemons: broadcast gossip, pull and push exchanges with
 * one peer, and what the network layer knows about connections. libp2p implements it in the
 * daemon (mesh/libp2p.ts: gossipsub, streams, Noise, yamux); the simulator implements it over
 * its virtual network. Every exchange is bounded by its timeout, whatever the peer does.
 */
export interface Transport {
  /** Start listening and connecting; handlers receive what arrives. */
  start(handlers: TransportHandlers): Promise<void>
  /** Hang up and release everything (after the protocol's last words were published). */
  stop(): Promise<void>
  /** Broadcast to every daemon; never rejects (a lost message is repaired by anti-entropy). */
  publish(msg: GossipMessage): Promise<void>
  /** Pull from a peer: each batch of registers it sends goes to `accept`, awaited in order. */
  pull(
    peer: string,
    request: PullRequest,
    timeoutMs: number,
    accept: (entries: readonly Entry[]) => Promise<void>
  ): Promise<void>
  /** Push registers to a peer; resolves on its acknowledgement (synced there). */
  push(peer: string, entries: readonly Entry[], timeoutMs: number): Promise<void>
  /**
   * Fetch a blob from a peer, streamed. Rejects BLOB_NOT_FOUND when the peer does not hold it,
   * and fails the stream when it stalls for `idleMs` or ends short. The bytes are not checked
   * against the name here: whoever stores or serves them checks.
   */
  fetchBlob(peer: string, sha256: string, idleMs: number): AsyncIterable<Uint8Array>
  /** Which of these blobs a peer holds (at most a few thousand names per call). */
  blobsHeld(peer: string, sha256s: readonly string[], timeoutMs: number): Promise<string[]>
  /**
   * Send a blob to a peer; resolves once the peer holds it durably (checked by its name there).
   * `job`: the blob is that job's output, sent before its success is recorded (the peer asks for
   * the job's registers before it collects the copy).
   */
  sendBlob(
    peer: string,
    blob: BlobRef,
    source: AsyncIterable<Uint8Array>,
    idleMs: number,
    job?: string
  ): Promise<void>
  /** Peers with an open connection now. */
  connectedPeers(): string[]
  /** Peers this daemon knew before it started (a persisted peer store). */
  knownPeers(): Promise<number>
  /** Bootstrap addresses whose daemon this one is not connected to. */
  unreachedBootstrap(): string[]
  /** This daemon's listen addresses, as others should dial them. */
  multiaddrs(): string[]
  /** A heartbeat named a daemon: connect to it if the transport wants more connections. */
  heardOf(record: PeerRecord): void
}
