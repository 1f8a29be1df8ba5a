import { createHash } from 'node:crypto'
import { compareStrings } from '../core/canonical.ts'
import { ShoalError } from '../core/errors.ts'
import { rankPeers } from '../core/hrw.ts'
import type { BlobRef, BlobStore, Cancel, Clock, Log } from '../core/ports.ts'
import { outputBlob } from '../core/register.ts'
import type { Mesh } from '../mesh/mesh.ts'
import type { Transport } from '../mesh/transport.ts'
import type { Replica } from '../store/replica.ts'

/** Blob names per question to a peer about which it holds. */
const HELD_BATCH = 2000

/** A blob some register references, and the daemon that made it (if the register says). */
export interface BlobUse {
  blob: BlobRef
  runner?: string
}

/** Deliberate bugs, planted only by the simulator's tests to prove its checks catch them. */
export interface OutputSeams {
  /** The check never fetches the blobs this daemon should hold. */
  noRepair?: boolean
  /** The check collects every blob it holds at once, referenced or not (no grace). */
  collectEverything?: boolean
}

export interface OutputKeeperInit {
  /** Copies of each blob, this daemon's included, where that many daemons are live. */
  replicas: number
  /** Period of the check (copies to make, blobs to collect). */
  checkMs: number
  /** A blob no register references is deleted after this long. */
  graceMs: number
  /** A blob transfer that makes no progress for this long fails. */
  idleMs: number
  logger: Log
  seams?: OutputSeams
}

export interface OutputKeeperComponents {
  peerId: string
  blobs: BlobStore
  transport: Transport
  replica: Replica
  mesh: Mesh
  clock: Clock
  /** Whether this daemon counts itself among the live holders (alive, not leaving). */
  serving: () => boolean
}

/**
 * Keeps fragment outputs (and whole stderr logs) that live as content-addressed blobs
 * (docs/decisions/014). Where copies go is computed, never stored: a blob's holders are the
 * daemon that ran its try, while it is live, then the live daemons ranked by rendezvous on the
 * blob's hash, `replicas` in all. So every daemon knows, from the membership alone, which blobs
 * it should hold; its periodic check fetches those it lacks (which is how a copy lost with a
 * dead or departed holder is made again) and deletes those no register references any more.
 * The runner copies a new output to the others before its success is recorded (`secure`).
 */
export class OutputKeeper {
  private readonly init: OutputKeeperInit
  private readonly c: OutputKeeperComponents
  private readonly log: Log
  /** Blobs being made, secured or received: not collected, whatever the registers say yet. */
  private readonly pinned = new Map<string, number>()
  /** When each pin was last released (monotonic ms): a check that began earlier keeps the blob. */
  private readonly released = new Map<string, number>()
  /** When each blob was first seen unreferenced (monotonic ms). */
  private readonly unreferencedSince = new Map<string, number>()
  private readonly copying = new Map<string, Promise<void>>()
  /**
   * Copies a runner sent here before recording its success, and the job they are the output of:
   * the register that references one may not have reached this daemon yet (the runner recorded,
   * spread it to some daemons, and was lost), so such a copy is collected only once a pull of the
   * job's registers from every live peer shows that nothing references it.
   */
  private readonly securedFor = new Map<string, string>()
  /**
   * Every register of every live daemon was pulled since this daemon started. Until then a blob
   * without a job id here may be a copy received in an earlier life (whose job id was in that
   * life's memory only), and is not collected.
   */
  private learnedAll = false
  private cancelCheck: Cancel | undefined
  private checking: Promise<void> | undefined
  private stopped = false
  /** Copies made by the check (repairs), for metrics and tests. */
  repaired = 0
  /** Blobs collected. */
  collected = 0

  constructor(init: OutputKeeperInit, components: OutputKeeperComponents) {
    this.init = init
    this.c = components
    this.log = init.logger
  }

  start(): void {
    this.schedule()
  }

  /** Stop checking (a copy under way fails once the transport is closed; its partial file is dropped). */
  stop(): void {
    this.stopped = true
    this.cancelCheck?.()
  }

  /** The live daemons that should hold a blob, in order: its runner (while live), then by rank. */
  holders(sha256: string, runner?: string): string[] {
    const live = this.live()
    const ranked = rankPeers(
      sha256,
      live.map((id) => ({ id, capacity: 1 }))
    ).map((p) => p.id)
    const first = runner !== undefined && live.includes(runner) ? [runner] : []
    return [...first, ...ranked.filter((id) => id !== runner)].slice(0, Math.max(1, this.init.replicas))
  }

  /**
   * Copy a blob made here to the other daemons that should hold it, in parallel, before its
   * success is recorded. True when at least one other daemon holds it now (trying the next
   * ranked daemons when those that should hold it fail), or when one copy is all there can be
   * (one replica configured, or no other daemon known: a mesh of one). False: the caller should
   * not record a result whose only copy is here, including when other daemons are known but
   * none is live now. Further copies that failed are made later by the holders' checks. The
   * copies name `job` (whose output the blob is), so their holders learn its registers before
   * they collect them.
   */
  async secure(blob: BlobRef, job?: string): Promise<boolean> {
    const self = this.c.peerId
    this.pin(blob.sha256, 1)
    try {
      const live = this.live().filter((p) => p !== self)
      const others = rankPeers(
        blob.sha256,
        live.map((id) => ({ id, capacity: 1 }))
      ).map((p) => p.id)
      // Other daemons known but none live now (dead, cut off, leaving) is not a mesh of one: a
      // success recorded now would have its only copy on this disk, lost with it (the simulator
      // found a runner alone for a moment that recorded, left, and was then lost for good).
      if (this.init.replicas <= 1 || !this.c.mesh.peers().some((p) => !p.self)) return true
      const want = Math.min(this.init.replicas - 1, others.length)
      const copy = (peer: string): Promise<boolean> =>
        this.c.transport.sendBlob(peer, blob, this.c.blobs.get(blob.sha256), this.init.idleMs, job).then(
          () => true,
          (err: unknown) => {
            this.log.warn({ peer, blob: blob.sha256, err: (err as Error).message }, 'cannot copy an output')
            return false
          }
        )
      let made = (await Promise.all(others.slice(0, want).map(copy))).filter(Boolean).length
      for (const peer of others.slice(want)) {
        if (made > 0) break
        if (await copy(peer)) made++
      }
      return made > 0
    } finally {
      this.pin(blob.sha256, -1)
    }
  }

  /** Serve a peer's fetch. */
  async serve(sha256: string): Promise<{ bytes: number; source: AsyncIterable<Uint8Array> } | undefined> {
    const bytes = await this.c.blobs.size(sha256)
    if (bytes === undefined) return undefined
    return { bytes, source: this.c.blobs.get(sha256) }
  }

  /**
   * Take a copy a peer sends (checked against its name by the store). `job`: a runner secures
   * that job's output before recording it; remembered, so the copy outlives the grace until this
   * daemon has asked the live daemons for the job's registers (see securedFor).
   */
  async receive(blob: BlobRef, source: AsyncIterable<Uint8Array>, job?: string): Promise<void> {
    this.pin(blob.sha256, 1)
    try {
      const got = await this.c.blobs.put(source, blob.sha256)
      if (job !== undefined) this.securedFor.set(blob.sha256, job)
      if (got.bytes !== blob.bytes) this.log.warn({ blob: blob.sha256 }, 'a copied blob has another size')
    } finally {
      this.pin(blob.sha256, -1)
    }
  }

  /**
   * A blob's bytes, from this daemon's store or streamed from live holders (those that should
   * hold it first, then every other live daemon), checked against its name. A holder lost in the
   * middle is replaced by the next, which resumes where the first stopped. Fails the stream
   * (BLOB_UNAVAILABLE) when no live daemon can give all of it.
   */
  async *read(use: BlobUse): AsyncIterable<Uint8Array> {
    const { sha256, bytes } = use.blob
    if ((await this.c.blobs.size(sha256)) !== undefined) {
      yield* this.c.blobs.get(sha256)
      return
    }
    const self = this.c.peerId
    const first = this.holders(sha256, use.runner)
    const peers = [...first, ...this.live().filter((p) => !first.includes(p))].filter((p) => p !== self)
    const hash = createHash('sha256')
    let sent = 0
    const failures: string[] = []
    for (const peer of peers) {
      try {
        let skip = sent
        for await (const chunk of this.c.transport.fetchBlob(peer, sha256, this.init.idleMs)) {
          // A holder taking over from a lost one sends from the start: skip what was given.
          let part = chunk
          if (skip > 0) {
            if (part.byteLength <= skip) {
              skip -= part.byteLength
              continue
            }
            part = part.subarray(skip)
            skip = 0
          }
          if (sent + part.byteLength > bytes) throw new Error('more bytes than the blob has')
          hash.update(part)
          sent += part.byteLength
          yield part
        }
        if (sent !== bytes) throw new Error(`ended after ${sent} of ${bytes} bytes`)
        const got = hash.digest('hex')
        if (got !== sha256)
          throw new ShoalError('BLOB_MISMATCH', `blob ${sha256}: the bytes served hash to ${got}`)
        return
      } catch (err) {
        if (err instanceof ShoalError && err.code === 'BLOB_MISMATCH') throw err
        failures.push(`${peer}: ${(err as Error).message}`)
      }
    }
    throw new ShoalError(
      'BLOB_UNAVAILABLE',
      `blob ${sha256}: no live daemon could serve it${failures.length > 0 ? ` (${failures.join('; ')})` : ''}`
    )
  }

  /** Which of these blobs are held here (a peer's question before it serves an output). */
  async held(sha256s: readonly string[]): Promise<string[]> {
    const out: string[] = []
    for (const sha256 of sha256s) if ((await this.c.blobs.size(sha256)) !== undefined) out.push(sha256)
    return out
  }

  /**
   * The blobs of `uses` that no live daemon holds now: held here, or said held by a live holder
   * (those that should hold it asked first, every other live daemon for the rest). Asked before
   * an answer starts, so an output that cannot be served is an error, not a truncated answer.
   */
  async unavailable(uses: readonly BlobUse[]): Promise<BlobUse[]> {
    const self = this.c.peerId
    const missing = new Map<string, BlobUse>()
    for (const use of uses)
      if ((await this.c.blobs.size(use.blob.sha256)) === undefined) missing.set(use.blob.sha256, use)
    const asked = new Map<string, Set<string>>()
    const ask = async (byPeer: Map<string, string[]>): Promise<void> => {
      await Promise.all(
        [...byPeer].map(async ([peer, sha256s]) => {
          for (const sha of sha256s) asked.set(sha, (asked.get(sha) ?? new Set()).add(peer))
          for (let i = 0; i < sha256s.length; i += HELD_BATCH) {
            const held = await this.c.transport
              .blobsHeld(peer, sha256s.slice(i, i + HELD_BATCH), this.init.idleMs)
              .catch(() => [] as string[])
            for (const sha of held) missing.delete(sha)
          }
        })
      )
    }
    const group = (peersOf: (use: BlobUse) => string[]): Map<string, string[]> => {
      const byPeer = new Map<string, string[]>()
      for (const use of missing.values())
        for (const peer of peersOf(use)) {
          if (peer === self || asked.get(use.blob.sha256)?.has(peer) === true) continue
          const list = byPeer.get(peer)
          if (list === undefined) byPeer.set(peer, [use.blob.sha256])
          else list.push(use.blob.sha256)
        }
      return byPeer
    }
    if (missing.size > 0) await ask(group((use) => this.holders(use.blob.sha256, use.runner)))
    if (missing.size > 0) await ask(group(() => this.live()))
    return [...missing.values()]
  }

  /** Every blob the registers held here reference. */
  referenced(): Map<string, BlobUse> {
    const out = new Map<string, BlobUse>()
    // The same bytes may be the output of several tries: every daemon must pick the same
    // runner, whatever order its registers arrived in, so all agree on the holders.
    const add = (blob: BlobRef, runner?: string): void => {
      const had = out.get(blob.sha256)
      if (had === undefined) out.set(blob.sha256, runner !== undefined ? { blob, runner } : { blob })
      else if (runner !== undefined && (had.runner === undefined || compareStrings(runner, had.runner) < 0))
        had.runner = runner
    }
    const state = this.c.replica.state
    for (const job of state.jobs.values()) {
      // A deleted job's kept output is no longer anyone's: its blobs are collected.
      if (job.deleted === undefined)
        for (const part of job.finished?.output ?? []) if (typeof part !== 'string') add(part)
      for (const reg of state.fragmentsOf(job.id).values()) {
        const claim = reg.claim
        if (claim === null) continue
        const out = outputBlob(claim)
        if (out !== undefined) add(out, claim.holder)
        for (const t of claim.tries ?? []) if (t.logBlob !== undefined) add(t.logBlob, t.holder)
      }
    }
    return out
  }

  /** One check now (tests; the loop runs it every checkMs). */
  check(): Promise<void> {
    this.checking ??= this.doCheck().finally(() => {
      this.checking = undefined
    })
    return this.checking
  }

  private schedule(): void {
    if (this.stopped) return
    this.cancelCheck = this.c.clock.after(this.init.checkMs, () => {
      this.check()
        .catch((err: unknown) => this.log.warn({ err: (err as Error).message }, 'output check failed'))
        .finally(() => this.schedule())
    })
  }

  private async doCheck(): Promise<void> {
    // Until this daemon has heard the mesh, it may not hold every register that references a
    // blob here, nor know who is live.
    if (!this.c.mesh.isSynced || !this.c.serving()) return
    const uses = this.referenced()
    const self = this.c.peerId
    for (const use of uses.values()) {
      if (this.stopped) return
      if (this.init.seams?.noRepair === true) break
      if (!this.holders(use.blob.sha256, use.runner).includes(self)) continue
      if ((await this.c.blobs.size(use.blob.sha256)) !== undefined) continue
      await this.copy(use)
    }
    // Repairs may have taken long: collect against the registers as they are now, and keep a blob
    // whose pin was released since (its register was applied after this snapshot).
    const now = this.c.clock.now()
    let current = this.referenced()
    const kept = (sha256: string): boolean =>
      current.has(sha256) || this.pinned.has(sha256) || (this.released.get(sha256) ?? -Infinity) >= now
    /** Copies a runner secured here, unreferenced past the grace: collected only after asking (below). */
    const secured = new Map<string, string>()
    /** Blobs without a job id, unreferenced past the grace, before anything was learned this life. */
    const unknown: string[] = []
    for await (const { sha256 } of this.c.blobs.list()) {
      if (this.stopped) return
      if (this.init.seams?.collectEverything === true) {
        await this.c.blobs.delete(sha256)
        continue
      }
      if (kept(sha256)) {
        this.unreferencedSince.delete(sha256)
        continue
      }
      const since = this.unreferencedSince.get(sha256)
      if (since === undefined) this.unreferencedSince.set(sha256, now)
      else if (now - since >= this.init.graceMs) {
        const job = this.securedFor.get(sha256)
        if (job !== undefined) secured.set(sha256, job)
        else if (this.learnedAll) await this.collect(sha256)
        else unknown.push(sha256)
      }
    }
    // The register that references a secured copy may be on live daemons and not here yet (its
    // runner recorded, spread it to some, and was lost for good): learn the job's registers from
    // every live daemon first (every register, once per life, for blobs kept from an earlier
    // life), and collect only what they do not reference either. When one does not answer, keep
    // the copies until the next check.
    const all = unknown.length > 0 && (await this.learn())
    if (all) this.learnedAll = true
    const jobs = secured.size > 0 && (all || (await this.learn([...new Set(secured.values())])))
    if (all || jobs) {
      current = this.referenced()
      for (const sha256 of [...(all ? unknown : []), ...(jobs ? secured.keys() : [])]) {
        if (this.stopped) return
        if (kept(sha256)) this.unreferencedSince.delete(sha256)
        else await this.collect(sha256)
      }
    }
    for (const sha256 of this.unreferencedSince.keys())
      if (current.has(sha256)) this.unreferencedSince.delete(sha256)
    for (const [sha256, at] of this.released) if (at < now) this.released.delete(sha256)
  }

  private async collect(sha256: string): Promise<void> {
    await this.c.blobs.delete(sha256)
    this.unreferencedSince.delete(sha256)
    this.securedFor.delete(sha256)
    this.collected++
  }

  /**
   * Pull these jobs' registers (all, without `jobs`) from every other live daemon. True when
   * each answered (and at least one is live), or when no other daemon is known (a mesh of one):
   * what references a blob of theirs anywhere live is then known here.
   */
  private async learn(jobs?: string[]): Promise<boolean> {
    const self = this.c.peerId
    const peers = this.live().filter((p) => p !== self)
    if (peers.length === 0) return !this.c.mesh.peers().some((p) => !p.self)
    const pulls = await Promise.allSettled(
      peers.map((p) =>
        jobs === undefined
          ? this.c.mesh.pullAll(p, this.init.idleMs)
          : this.c.mesh.pullJobs(p, jobs, this.init.idleMs)
      )
    )
    const failed = pulls.filter((r) => r.status === 'rejected').length
    if (failed > 0)
      this.log.debug(
        { jobs: jobs?.length ?? 'all', failed, of: peers.length },
        'keeping unreferenced blobs: peers did not answer'
      )
    return failed === 0
  }

  /** Fetch a blob this daemon should hold and lacks (once at a time per blob). */
  private copy(use: BlobUse): Promise<void> {
    const sha256 = use.blob.sha256
    let p = this.copying.get(sha256)
    if (p === undefined) {
      this.pin(sha256, 1)
      p = this.c.blobs
        .put(this.read(use), sha256)
        .then(
          () => {
            this.repaired++
            this.log.info({ blob: sha256, bytes: use.blob.bytes }, 'copied an output blob')
          },
          (err: unknown) =>
            this.log.warn({ blob: sha256, err: (err as Error).message }, 'cannot copy an output blob yet')
        )
        .finally(() => {
          this.copying.delete(sha256)
          this.pin(sha256, -1)
        })
      this.copying.set(sha256, p)
    }
    return p
  }

  private pin(sha256: string, by: number): void {
    const n = (this.pinned.get(sha256) ?? 0) + by
    if (n > 0) this.pinned.set(sha256, n)
    else {
      this.pinned.delete(sha256)
      this.released.set(sha256, this.c.clock.now())
    }
  }

  /**
   * Keep these blobs from collection until the returned release is called: the scheduler holds
   * a try's blobs from the end of its run until its claim is applied (which then references them).
   */
  hold(blobs: readonly BlobRef[]): () => void {
    for (const b of blobs) this.pin(b.sha256, 1)
    let done = false
    return () => {
      if (done) return
      done = true
      for (const b of blobs) this.pin(b.sha256, -1)
    }
  }

  /** Live daemons (alive and not leaving), this one included while it serves. */
  private live(): string[] {
    const out: string[] = []
    for (const p of this.c.mesh.peers()) {
      if (p.self) {
        if (this.c.serving()) out.push(p.peerId)
      } else if (p.state === 'alive' && !p.leaving) out.push(p.peerId)
    }
    return out
  }
}
