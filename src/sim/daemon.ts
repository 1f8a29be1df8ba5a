import { hash53 } from '../core/canonical.ts'
import { type ClaimTarget, capShare, newClaim, pickClaims } from '../core/claim.ts'
import { type RankedPeer, rankPeers, SlotOwnerCache } from '../core/hrw.ts'
import { Membership, type Transition } from '../core/membership.ts'
import { claimAfterTry, type TryResult } from '../core/outcome.ts'
import {
  type Claim,
  type FragmentRegister,
  fencingToken,
  fragmentKey,
  type JobRegister
} from '../core/register.ts'
import { idempotentJobId, type JobSpecInput, resolveSpec, specHashOf } from '../core/spec.ts'
import { itemInterval } from '../core/split.ts'
import { type Entry, entryKey, ReplicatedState } from '../core/state.ts'
import { isTerminalJobState, jobView } from '../core/status.ts'
import type { VirtualClock } from './clock.ts'
import type { Heartbeat, Message } from './network.ts'
import type { Random } from './random.ts'

/** Protocol timings and limits of every virtual daemon (the real daemon's config, in virtual ms). */
export interface DaemonParams {
  heartbeatMs: number
  suspectMs: number
  syncIntervalMs: number
  /** Without hearing anyone this long after start, a daemon counts itself synced (it is alone). */
  syncGraceMs: number
  /** A pull without an answer this long is given up (the stream timed out). */
  pullTimeoutMs: number
  stealDelayMs: number
  tickMs: number
  hostLostLimit: number
  deltaBatchMs: number
  ackReplicas: number
  ackTimeoutMs: number
  /** SIGTERM → exit of a killed task. */
  killMs: number
  /** The executor's SIGTERM → SIGKILL grace (counts in the overdue-claim safety net). */
  killGraceMs: number
  /** Backoff before the first retry of a failed try; doubles per attempt, ±25% jitter. */
  retryBackoffMs: number
  retryBackoffMaxMs: number
  /** How long a leaving daemon lets its runs finish before handing them back. */
  shutdownGraceMs: number
  /** SWIM refutation: claim nothing while an alive peer names this daemon a suspect. */
  swim: boolean
  /**
   * Keep a job in the claim loop's `finished` set for good once it was seen terminal, as
   * scheduler.ts did before the simulator found the bug (kept to show it). False, like today's
   * scheduler: a change to any of the job's registers puts it back in the
   * scan, since a job can leave a terminal state (a late SUCCEEDED beats a FAILED leaf).
   */
  stickyFinished: boolean
}

/** How one try of a fragment will go, drawn when it starts. */
export interface RunPlan {
  durationMs: number
  exitCode: number
  timedOut: boolean
}

/** Deliberate bugs, for tests that prove the invariant checker catches what it should. */
export interface Bugs {
  /** At this (1-based, run-wide) count of changes to held fragment registers, replace the merge result by an empty one. */
  lowerTopAtMerge?: number
  /** Restart without bumping the incarnation. */
  reuseIncarnation?: boolean
}

/** What a daemon sees of the simulated world around it. */
export interface World {
  readonly clock: VirtualClock
  readonly rng: Random
  readonly params: DaemonParams
  readonly bugs: Bugs
  /** Every daemon id (the persisted peer store: everyone knows everyone's address). */
  readonly peerIds: readonly string[]
  /** Wall clock origin, ms (incarnations derive from wall seconds). */
  readonly wallBase: number
  send(from: string, to: string, msg: Message): void
  planRun(job: JobRegister, path: string, items: number): RunPlan
  /** Fenced external resource: note a token at start; commit at the end (false: refused, exit 75). */
  fenceTouch(key: string, token: number): void
  fenceCommit(key: string, token: number): boolean
  /** Counts changes to held fragment registers run-wide (for the lowerTopAtMerge bug); returns the new count. */
  countFragmentChange(): number
  /** A register changed at `daemon`: `old` (as held before) became `next`. */
  onChange(daemon: string, old: Entry | undefined, next: Entry): void
  onClaim(daemon: string, target: ClaimTarget, reg: FragmentRegister): void
  onRunStart(daemon: string, job: JobRegister, key: string, claim: Claim, token: number): void
  /** A run ended: `executed` when its task ran to the end and committed (exit 0). */
  onRunEnd(daemon: string, job: JobRegister, key: string, how: RunEnd, executed: boolean): void
  /** This daemon's judgement of a peer changed (alive, suspect, dead, left). */
  onTransition(daemon: string, t: Transition): void
  /** A terminal claim this daemon wrote itself. */
  onTerminalWrite(key: string, claim: Claim): void
  trace(line: string): void
  readonly tracing: boolean
}

/** How a run ended: recorded its try, killed for a lost claim or a cancel, handed back, or died with its host. */
export type RunEnd = 'recorded' | 'aborted' | 'handback' | 'killed'

interface Run {
  key: string
  job: JobRegister
  path: string
  items: number
  claim: Claim
  token: number
  plan: RunPlan
  abortedFor?: 'lost' | 'handback' | 'cancel'
  ended: boolean
}

interface PendingAccept {
  jobId: string
  entries: Entry[]
  candidates: string[]
  deadline: number
  acked: number
  inFlight: number | null
  answered: boolean
  answer: (replicas: number) => void
}

/** The answer to a submission, as the HTTP client would see it. */
export type SubmitAnswer =
  | { status: 202; id: string; specHash: string; replicas: number; existing: boolean }
  | { status: 422; id: string }

/**
 * A virtual daemon: the real daemon's mesh, membership and scheduler logic reduced to event
 * handlers over the pure core, with a "disk" (registers synced so far) and an unsynced window
 * that a crash loses. Every callback of a process is tied to its life (a crash ends the life)
 * and waits out a pause (then runs late, as a stalled event loop would).
 */
export class SimDaemon {
  readonly id: string
  readonly capacity: number
  private readonly w: World
  private readonly p: DaemonParams
  private readonly fsyncEveryMs: number
  /** Origin of this host's monotonic clock and skew of its wall clock: no two hosts agree. */
  private readonly monoOffset: number
  private readonly wallSkew: number

  // Durable: survives crashes.
  private readonly disk = new Map<string, Entry>()
  private storedIncarnation = 0

  // The process.
  up = false
  paused = false
  /** Never coming back. */
  lost = false
  private life = 0
  incarnation = 0
  state = new ReplicatedState()
  synced = false
  private claiming = true
  private leaving = false
  private unsynced = new Map<string, Entry>()
  /** The membership table: the daemon's own code (core/membership.ts), on this host's clock. */
  private members!: Membership<Heartbeat>
  private hbSeq = 0
  private running = new Map<string, Run>()
  /** key → the register it was claimable in (epoch|seq|holder), and when this observer first saw it so. */
  private claimableSince = new Map<string, { sig: string; at: number }>()
  /** When this observer first saw each fragment's current RUNNING claim (overdue safety net). */
  private runningSeen = new Map<string, { sig: string; at: number }>()
  /** Slot owners of capped jobs, per membership (capFor). */
  private slotOwners = new SlotOwnerCache()
  /** When the claim loop last scanned, on this host's clock (wake throttle). */
  private lastTickAt = Number.NEGATIVE_INFINITY
  private finished = new Set<string>()
  private outbox: Entry[] = []
  private outboxPending = false
  private wakePending = false
  private pulling = new Map<string, number>()
  private accepts = new Map<number, PendingAccept>()
  private reqSeq = 0
  private deferredTimers: Array<() => void> = []
  private deferredIo: Array<() => void> = []

  constructor(
    world: World,
    init: { id: string; capacity: number; fsyncEveryMs: number; monoOffset: number; wallSkew: number }
  ) {
    this.w = world
    this.p = world.params
    this.id = init.id
    this.capacity = init.capacity
    this.fsyncEveryMs = init.fsyncEveryMs
    this.monoOffset = init.monoOffset
    this.wallSkew = init.wallSkew
  }

  /** Is a live (not paused) process of this incarnation running exactly this claim right now? */
  runs(key: string, claim: Pick<Claim, 'incarnation' | 'epoch'>): boolean {
    const r = this.running.get(key)
    return (
      this.up &&
      !this.paused &&
      this.incarnation === claim.incarnation &&
      r !== undefined &&
      r.abortedFor === undefined &&
      r.claim.epoch === claim.epoch
    )
  }

  /** Up and not draining for a graceful leave. */
  get serving(): boolean {
    return this.up && this.claiming
  }

  get runningCount(): number {
    return this.running.size
  }

  get idle(): boolean {
    return this.running.size === 0 && this.outbox.length === 0 && this.accepts.size === 0
  }

  /** This host's monotonic clock. */
  private mono(): number {
    return this.w.clock.now + this.monoOffset
  }

  /** This host's wall clock (display fields and incarnations only). */
  private wall(): number {
    return Math.round(this.w.wallBase + this.w.clock.now + this.wallSkew)
  }

  private trace(msg: string): void {
    if (this.w.tracing) this.w.trace(`${this.id}#${this.incarnation} ${msg}`)
  }

  // ---- process lifecycle ----

  /** Start (or restart): bump the synced incarnation, reload the disk, sync, then claim. */
  start(): void {
    this.up = true
    this.paused = false
    this.life++
    this.incarnation =
      this.w.bugs.reuseIncarnation === true && this.storedIncarnation > 0
        ? this.storedIncarnation
        : Math.max(this.storedIncarnation + 1, Math.floor(this.wall() / 1000))
    this.storedIncarnation = this.incarnation
    this.state = new ReplicatedState()
    for (const e of this.disk.values()) this.state.merge(e)
    this.unsynced = new Map()
    this.members = new Membership<Heartbeat>(
      this.id,
      this.p.suspectMs,
      this.p.heartbeatMs,
      () => this.mono(),
      (t) => this.w.onTransition(this.id, t)
    )
    this.running = new Map()
    this.claimableSince = new Map()
    this.runningSeen = new Map()
    this.slotOwners = new SlotOwnerCache()
    this.finished = new Set()
    this.outbox = []
    this.outboxPending = false
    this.wakePending = false
    this.pulling = new Map()
    this.accepts = new Map()
    this.deferredTimers = []
    this.deferredIo = []
    this.claiming = true
    this.leaving = false
    this.synced = false
    this.hbSeq = 0
    this.lastTickAt = Number.NEGATIVE_INFINITY
    this.trace(`start (${this.disk.size} registers on disk)`)
    this.heartbeat(this.mono())
    this.tickLoop()
    this.later(this.w.rng.between(0, this.p.syncIntervalMs), 'timer', () => this.syncLoop())
    this.later(this.fsyncEveryMs, 'timer', () => this.fsyncLoop())
    this.later(this.p.syncGraceMs, 'timer', () => {
      if (!this.synced && !this.hearsAnyone()) this.markSynced('nobody reachable')
    })
  }

  /** Power loss: processes die, writes since the last fsync are gone. Returns how many were lost. */
  crash(): number {
    const lost = this.unsynced.size
    this.trace(`crash (${lost} unsynced registers lost, ${this.running.size} runs killed)`)
    for (const r of this.running.values())
      if (!r.ended) this.w.onRunEnd(this.id, r.job, r.key, 'killed', false)
    this.up = false
    this.paused = false
    this.life++
    this.unsynced = new Map()
    this.running = new Map()
    this.deferredTimers = []
    this.deferredIo = []
    return lost
  }

  /** The event loop stops (GC, SIGSTOP, a frozen VM). Child processes go on running. */
  pause(): void {
    this.trace('pause')
    this.paused = true
  }

  /**
   * The event loop runs again. As in Node, expired timers run first (in expiry order), then the
   * I/O that queued up meanwhile (messages, exits of child processes), in arrival order.
   */
  resume(): void {
    if (!this.up || !this.paused) return
    this.trace(`resume (${this.deferredTimers.length} timers, ${this.deferredIo.length} I/O)`)
    this.paused = false
    const timers = this.deferredTimers
    const io = this.deferredIo
    this.deferredTimers = []
    this.deferredIo = []
    for (const fn of timers) fn()
    for (const fn of io) fn()
  }

  /**
   * Graceful leave: stop claiming (peers stop ranking it, its leases stay live), let runs finish
   * up to the grace, hand back the rest, announce leaving, flush, stop. `done` runs once it is down.
   */
  leave(done: () => void): void {
    if (!this.up || this.paused) return
    this.trace('leaving')
    this.claiming = false
    this.publishHeartbeat()
    this.later(this.p.shutdownGraceMs, 'timer', () => {
      for (const r of [...this.running.values()]) {
        if (r.ended) continue
        r.ended = true
        r.abortedFor = 'handback'
        this.running.delete(r.key)
        this.w.onRunEnd(this.id, r.job, r.key, 'handback', false)
        // Hand the fragment back untouched: same attempt, next seq, so anyone may claim it now.
        const next: Claim = { ...r.claim, seq: r.claim.seq + 1, phase: 'RUNNABLE' }
        const reg = this.state.fragment(r.job.id, r.path)
        this.announce(
          this.apply(
            [this.fragEntry(r.job, r.path, { top: reg?.top ?? r.claim.epoch, claim: next })],
            'local'
          )
        )
      }
      this.leaving = true
      this.fsync()
      this.flushOutbox()
      this.publishHeartbeat()
      this.trace('left')
      this.up = false
      this.life++
      this.unsynced = new Map()
      done()
    })
  }

  /** Schedule a callback of this process: it dies with the process and waits out a pause. */
  private later(delayMs: number, kind: 'timer' | 'io', fn: () => void): void {
    const life = this.life
    this.w.clock.after(delayMs, () => {
      if (life !== this.life || !this.up) return
      if (this.paused) (kind === 'timer' ? this.deferredTimers : this.deferredIo).push(fn)
      else fn()
    })
  }

  // ---- persistence ----

  private fsync(): void {
    for (const [k, e] of this.unsynced) this.disk.set(k, e)
    this.unsynced = new Map()
  }

  private fsyncLoop(): void {
    this.fsync()
    this.later(this.fsyncEveryMs, 'timer', () => this.fsyncLoop())
  }

  /**
   * Merge entries into the state; every register that changed goes to the unsynced window (or
   * to disk at once when `sync`), is checked for going backwards, and may kill a run whose claim
   * it beat.
   */
  private apply(entries: readonly Entry[], source: 'local' | 'remote', sync = false): Entry[] {
    const changed: Entry[] = []
    for (const e of entries) {
      const key = entryKey(e)
      const old = this.unsynced.get(key) ?? this.disk.get(key)
      // Registers travel as shared immutable objects, so most redeliveries carry exactly what is
      // held here; merging x into x changes nothing (idempotence, property-tested in core), so
      // skip the canonical-bytes comparison it would cost.
      if (old !== undefined && sameValue(old, e)) continue
      const m = this.state.merge(e)
      if (m === null) continue
      const next = this.maybeBreakMerge(old, m)
      this.w.onChange(this.id, old, next)
      this.unsynced.set(key, next)
      changed.push(next)
    }
    if (sync) this.fsync()
    if (changed.length > 0) this.onChanged(changed, source)
    return changed
  }

  /**
   * Test-only: a broken merge that forgets a register it held (so top falls), to prove the checker
   * notices. Counts changes of registers already held, run-wide.
   */
  private maybeBreakMerge(old: Entry | undefined, m: Entry): Entry {
    if (m.kind !== 'frag' || old === undefined || this.w.bugs.lowerTopAtMerge === undefined) return m
    if (this.w.countFragmentChange() !== this.w.bugs.lowerTopAtMerge) return m
    const broken: Entry = { ...m, value: { top: 0, claim: null } }
    this.rebuild((e) => (entryKey(e) === entryKey(m) ? broken : e), [broken])
    return broken
  }

  /** Replace the in-memory state (test hooks only): keep `map(entry)` of every register. */
  private rebuild(map: (e: Entry) => Entry | null, extra: Entry[] = []): void {
    const all = new Map(this.disk)
    for (const [k, e] of this.unsynced) all.set(k, e)
    for (const e of extra) all.set(entryKey(e), e)
    this.state = new ReplicatedState()
    this.disk.clear()
    this.unsynced = new Map()
    for (const e of all.values()) {
      const kept = map(e)
      if (kept === null) continue
      this.state.merge(kept)
      this.disk.set(entryKey(kept), kept)
    }
  }

  /** Test hook: lose a job and all its registers on this daemon, as a bug would. */
  forgetJob(jobId: string): void {
    this.rebuild((e) => ((e.kind === 'job' ? e.id : e.job) === jobId ? null : e))
  }

  /** Test hook: a register written by nobody's run lands here (a corrupt replica). */
  corrupt(job: JobRegister, path: string): void {
    const reg = this.state.fragment(job.id, path)
    const top = (reg?.top ?? 0) + 5
    const ghost: Claim = {
      epoch: top,
      holder: 'ghost',
      incarnation: 1,
      seq: 2,
      attempt: 1,
      phase: 'SUCCEEDED',
      hostLost: 0
    }
    this.apply([this.fragEntry(job, path, { top, claim: ghost })], 'remote', true)
  }

  // ---- membership ----

  /** Does this daemon hear anyone (an alive peer)? */
  private hearsAnyone(): boolean {
    return this.members.entries().some((e) => e.state === 'alive')
  }

  /**
   * Lease liveness (decision 004): our own claim lives only while a run of this incarnation
   * backs it; another holder's while it is alive or suspect in that same incarnation; a newer
   * incarnation, dead or left lapses it; a holder never heard from keeps it until we listened
   * for 2 × suspectMs.
   */
  private readonly leaseLive = (holder: string, incarnation: number, key: string): boolean => {
    if (holder === this.id) return incarnation === this.incarnation && this.running.has(key)
    const seen = this.seenRunning(key)
    if (this.members.superseded(holder, incarnation)) return false
    const live = this.members.leaseLive(holder, incarnation)
    // A claim learned only lately keeps 2 × suspectMs from when it was first seen (scheduler.ts).
    if (!live) return seen !== undefined && this.mono() - seen < 2 * this.p.suspectMs
    return !this.overdue(key, seen)
  }

  /** When this observer first saw the fragment's current RUNNING claim (scheduler.ts seenRunning). */
  private seenRunning(key: string): number | undefined {
    const parts = key.split('/')
    const claim = this.state.fragment(parts[1] as string, parts.slice(3).join('/'))?.claim
    if (claim == null || claim.phase !== 'RUNNING') return undefined
    const sig = `${claim.epoch}|${claim.holder}|${claim.incarnation}`
    const seen = this.runningSeen.get(key)
    if (seen !== undefined && seen.sig === sig) return seen.at
    const now = this.mono()
    this.runningSeen.set(key, { sig, at: now })
    return now
  }

  /**
   * Safety net (scheduler.ts overdue): a claim seen RUNNING, on this observer's clock, for longer
   * than the job's lifespan + kill grace + 2 × suspectMs lost its run somewhere (the holder would
   * have killed it at the timeout and recorded the try), so its lease lapses even if the holder
   * looks alive.
   */
  private overdue(key: string, seen: number | undefined): boolean {
    if (seen === undefined) return false
    const jobId = key.split('/')[1] as string
    const lifespanMs = (this.state.jobs.get(jobId)?.spec.timeoutSeconds ?? Number.POSITIVE_INFINITY) * 1000
    return this.mono() - seen > lifespanMs + this.p.killGraceMs + 2 * this.p.suspectMs
  }

  /** Alive, synced, claiming daemons (self included): those ranked for claims. */
  private claimers(): RankedPeer[] {
    const out: RankedPeer[] = []
    if (this.synced && this.claiming && !this.leaving) out.push({ id: this.id, capacity: this.capacity })
    for (const { record: r, state } of this.members.entries()) {
      if (r.synced && r.claiming && !r.leaving && state === 'alive')
        out.push({ id: r.peerId, capacity: r.capacity })
    }
    return out
  }

  private suspectedByAnyone(): boolean {
    return this.members.suspectedBy().length > 0
  }

  /** Drift-corrected heartbeat loop (mesh.ts scheduleHeartbeat). */
  private heartbeat(expectedAt: number): void {
    const firedAt = this.mono()
    // membership.tick(): a loop that ran late means we were stalled, not that everyone else was.
    this.members.tick()
    this.publishHeartbeat()
    this.wake()
    const next = Math.max(expectedAt + this.p.heartbeatMs, firedAt)
    this.later(next - firedAt, 'timer', () => this.heartbeat(next))
  }

  private publishHeartbeat(): void {
    this.hbSeq++
    const suspects = this.p.swim ? this.members.suspects() : []
    const rec: Heartbeat = {
      peerId: this.id,
      incarnation: this.incarnation,
      seq: this.hbSeq,
      capacity: this.capacity,
      synced: this.synced,
      claiming: this.claiming,
      leaving: this.leaving,
      suspects
    }
    for (const id of this.w.peerIds) if (id !== this.id) this.w.send(this.id, id, { t: 'hb', rec })
  }

  // ---- gossip and anti-entropy ----

  /** A message arrives. False when no process runs here (the network counts it undeliverable). */
  receive(msg: Message): boolean {
    if (!this.up) {
      // Nobody listens: a dial fails at once, so the sender learns it quickly.
      if (msg.t === 'pull' || msg.t === 'push') {
        this.w.send(this.id, msg.from, { t: 'refused', from: this.id, req: msg.req, of: msg.t })
      }
      return false
    }
    if (this.paused) this.deferredIo.push(() => this.handle(msg))
    else this.handle(msg)
    return true
  }

  private handle(msg: Message): void {
    switch (msg.t) {
      case 'hb': {
        if (msg.rec.peerId === this.id) return
        const { changed, connected } = this.members.observe(msg.rec)
        if (connected) this.pull(msg.rec.peerId)
        if (changed) this.wake()
        return
      }
      case 'delta':
        this.apply(msg.entries, 'remote')
        return
      case 'pull': {
        // Serve: every register of each job whose digest differs from the puller's.
        const entries: Entry[] = []
        for (const id of this.state.jobIds()) {
          if (msg.digests[id] !== this.state.digest(id)) entries.push(...this.state.entriesOf(id))
        }
        this.w.send(this.id, msg.from, { t: 'pulled', from: this.id, req: msg.req, entries })
        return
      }
      case 'pulled': {
        this.apply(msg.entries, 'remote')
        if (this.pulling.get(msg.from) === msg.req) {
          this.pulling.delete(msg.from)
          this.markSynced(`pulled from ${msg.from}`)
        }
        return
      }
      case 'push':
        // A replica push of an accepted job: synced here before the ack.
        this.apply(msg.entries, 'remote', true)
        this.w.send(this.id, msg.from, { t: 'ack', from: this.id, req: msg.req })
        return
      case 'ack': {
        const a = this.accepts.get(msg.req)
        if (a === undefined || a.inFlight !== msg.req) return
        a.acked++
        a.inFlight = null
        this.replicateNext(a)
        return
      }
      case 'refused': {
        if (msg.of === 'pull') {
          if (this.pulling.get(msg.from) === msg.req) this.pulling.delete(msg.from)
          return
        }
        const a = this.accepts.get(msg.req)
        if (a === undefined || a.inFlight !== msg.req) return
        a.inFlight = null
        this.replicateNext(a)
        return
      }
    }
  }

  private markSynced(why: string): void {
    if (this.synced) return
    this.synced = true
    this.trace(`synced (${why})`)
    this.wake()
  }

  /** Pull the peer's differing registers (one pull per peer at a time). */
  private pull(peer: string): void {
    if (this.pulling.has(peer)) return
    const req = ++this.reqSeq
    this.pulling.set(peer, req)
    this.w.send(this.id, peer, { t: 'pull', from: this.id, req, digests: this.state.digestAll() })
    this.later(this.p.pullTimeoutMs, 'timer', () => {
      if (this.pulling.get(peer) === req) this.pulling.delete(peer)
    })
  }

  private syncLoop(): void {
    const connected: string[] = []
    for (const { record, state } of this.members.entries()) {
      if (state === 'alive' || state === 'suspect') connected.push(record.peerId)
    }
    if (connected.length > 0) this.pull(this.w.rng.pick(connected))
    this.later(this.p.syncIntervalMs, 'timer', () => this.syncLoop())
  }

  /** Queue changed registers for gossip; they go out in batches. */
  private announce(entries: readonly Entry[]): void {
    if (entries.length === 0) return
    this.outbox.push(...entries)
    if (this.outbox.length >= 400) this.flushOutbox()
    else if (!this.outboxPending) {
      this.outboxPending = true
      this.later(this.p.deltaBatchMs, 'timer', () => this.flushOutbox())
    }
  }

  private flushOutbox(): void {
    this.outboxPending = false
    if (this.outbox.length === 0) return
    const entries = this.outbox
    this.outbox = []
    for (const id of this.w.peerIds)
      if (id !== this.id) this.w.send(this.id, id, { t: 'delta', from: this.id, entries })
  }

  // ---- accepting jobs ----

  /**
   * Accept a job (daemon.ts submit): resolve, store synced, announce, then push to the next
   * ackReplicas - 1 live peers by rendezvous on the job id and wait for their synced acks up to
   * ackTimeoutMs. `answer` runs once, with the 202 or 422 the client gets, unless the daemon
   * dies first (then the client got no answer).
   */
  submit(input: JobSpecInput, freshId: string, answer: (a: SubmitAnswer) => void): void {
    const spec = resolveSpec(input, {})
    const specHash = specHashOf(spec)
    const id = spec.idempotencyKey !== undefined ? idempotentJobId('sim', spec.idempotencyKey) : freshId
    const existing = this.state.jobs.get(id)
    if (existing !== undefined) {
      if (existing.specHash !== specHash) answer({ status: 422, id })
      else answer({ status: 202, id, specHash, replicas: 1, existing: true })
      return
    }
    const job: JobRegister = {
      id,
      tenant: 'sim',
      spec,
      specHash,
      createdAt: this.wall(),
      cancelled: false,
      acceptedBy: this.id
    }
    const entries: Entry[] = [{ kind: 'job', id, value: job }]
    this.trace(`accept job ${id} (${spec.fragmentCount} fragments)`)
    this.announce(this.apply(entries, 'local', true))
    const want = this.p.ackReplicas - 1
    const a: PendingAccept = {
      jobId: id,
      entries,
      candidates: this.replicaPeers(id),
      deadline: this.mono() + this.p.ackTimeoutMs,
      acked: 0,
      inFlight: null,
      answered: false,
      answer: (replicas) => answer({ status: 202, id, specHash, replicas: 1 + replicas, existing: false })
    }
    if (want <= 0) {
      a.answer(0)
      return
    }
    this.replicateNext(a)
    this.later(this.p.ackTimeoutMs, 'timer', () => this.finishAccept(a))
  }

  /** Cancel a job (OR-merged flag), synced locally, then gossiped. */
  cancel(jobId: string): boolean {
    const job = this.state.jobs.get(jobId)
    if (job === undefined) return false
    this.announce(this.apply([{ kind: 'job', id: jobId, value: { ...job, cancelled: true } }], 'local', true))
    return true
  }

  private replicaPeers(jobId: string): string[] {
    const peers: RankedPeer[] = []
    for (const { record, state } of this.members.entries()) {
      if (state === 'alive' && !record.leaving) peers.push({ id: record.peerId, capacity: 1 })
    }
    return rankPeers(jobId, peers).map((p) => p.id)
  }

  private replicateNext(a: PendingAccept): void {
    if (a.answered) return
    if (a.acked >= this.p.ackReplicas - 1 || this.mono() >= a.deadline) {
      this.finishAccept(a)
      return
    }
    const peer = a.candidates.shift()
    if (peer === undefined) {
      this.finishAccept(a)
      return
    }
    const req = ++this.reqSeq
    a.inFlight = req
    this.accepts.set(req, a)
    this.w.send(this.id, peer, { t: 'push', from: this.id, req, entries: a.entries })
  }

  private finishAccept(a: PendingAccept): void {
    if (a.answered) return
    a.answered = true
    for (const [req, x] of this.accepts) if (x === a) this.accepts.delete(req)
    a.answer(a.acked)
  }

  // ---- the claim loop (scheduler.ts) ----

  /** Wake the claim loop soon (coalesced). */
  private wake(): void {
    if (this.wakePending || !this.claiming) return
    this.wakePending = true
    // Like setImmediate after a poll phase, the messages of one burst wake the loop once; and
    // under a storm of changes at most one scan runs every MIN_TICK_GAP_MS (scheduler.ts wake).
    const wait = Math.max(WAKE_MS, this.lastTickAt + MIN_TICK_GAP_MS - this.mono())
    this.later(wait, 'io', () => {
      this.wakePending = false
      this.tick()
    })
  }

  private tickLoop(): void {
    this.tick()
    this.later(this.p.tickMs, 'timer', () => this.tickLoop())
  }

  private onChanged(changed: readonly Entry[], source: 'local' | 'remote'): void {
    for (const e of changed) {
      // The fix scheduler.ts lacks: a job can leave a terminal state (a late SUCCEEDED beats the
      // FAILED leaf that made it FAILED), so any change to it puts it back in the scan.
      if (!this.p.stickyFinished) this.finished.delete(e.kind === 'job' ? e.id : e.job)
      if (e.kind !== 'job' || !e.value.cancelled) continue
      // Cancelled (here or anywhere): stop every run of the job at once; none starts again.
      for (const r of this.running.values()) {
        if (r.job.id !== e.id || r.abortedFor !== undefined) continue
        this.trace(`job ${e.id} cancelled; killing ${r.key}`)
        r.abortedFor = 'cancel'
        this.later(this.p.killMs, 'io', () => this.endRun(r))
      }
    }
    if (source === 'remote') {
      for (const e of changed) {
        if (e.kind !== 'frag') continue
        const r = this.running.get(fragmentKey(e.job, e.specHash, e.path))
        // A holder that learns a newer claim beat its own kills its process at once: records nothing.
        if (r !== undefined && r.abortedFor === undefined && !sameClaim(e.value.claim, r.claim)) {
          this.trace(
            `lost ${r.key} ${r.claim.epoch} to ${e.value.claim?.holder}@${e.value.claim?.epoch}; killing`
          )
          r.abortedFor = 'lost'
          this.later(this.p.killMs, 'io', () => this.endRun(r))
        }
      }
    }
    this.wake()
  }

  private forgetSince(jobId: string): void {
    const prefix = `frag/${jobId}/`
    for (const key of this.claimableSince.keys()) if (key.startsWith(prefix)) this.claimableSince.delete(key)
    this.slotOwners.forget(jobId)
    for (const key of this.runningSeen.keys()) if (key.startsWith(prefix)) this.runningSeen.delete(key)
  }

  private tick(): void {
    this.lastTickAt = this.mono()
    if (!this.claiming || !this.synced) return
    if (this.p.swim && this.suspectedByAnyone()) return
    const slots = this.capacity - this.running.size
    if (slots <= 0) return
    const peers = this.claimers()
    if (!peers.some((p) => p.id === this.id)) return
    const jobs: Array<{ job: JobRegister; frags: ReadonlyMap<string, FragmentRegister> }> = []
    for (const job of this.state.jobs.values()) {
      if (this.finished.has(job.id)) continue
      const frags = this.state.fragmentsOf(job.id)
      if (job.cancelled || isTerminalJobState(jobView(job, frags).state)) {
        this.finished.add(job.id)
        this.forgetSince(job.id)
        continue
      }
      jobs.push({ job, frags })
    }
    if (jobs.length === 0) return
    const now = this.mono()
    const targets = pickClaims(
      {
        self: this.id,
        peers,
        leaseLive: this.leaseLive,
        // A new register (a failed try, a hand-back) starts a new wait.
        claimableSince: (key, reg) => {
          const sig = reg?.claim == null ? '' : `${reg.claim.epoch}|${reg.claim.seq}|${reg.claim.holder}`
          const t = this.claimableSince.get(key)
          if (t !== undefined && t.sig === sig) return t.at
          this.claimableSince.set(key, { sig, at: now })
          return now
        },
        retryDelayMs: (t) => retryDelay(t.key, t.attempt, this.p.retryBackoffMs, this.p.retryBackoffMaxMs),
        cap: (job) => this.capFor(job, peers),
        now,
        stealDelayMs: this.p.stealDelayMs
      },
      jobs,
      slots
    )
    if (targets.length > 0) this.claim(targets)
  }

  /**
   * maxConcurrency without a coordinator (decision 005, scheduler.ts capFor): slot s of a job
   * belongs to the claimer ranked first for `slot/<job>/<s>`; a daemon starts fragments of the
   * job only within the slots it owns and while the live RUNNING claims it sees stay under the
   * cap. With differing views each view may hand a slot out once.
   */
  private capFor(
    job: JobRegister,
    peers: readonly RankedPeer[]
  ): { peers: RankedPeer[]; allowance: number } | undefined {
    const c = job.spec.maxConcurrency
    if (c === undefined) return undefined
    const owners = this.slotOwners.owners(job.id, c, peers)
    let localRunning = 0
    for (const r of this.running.values()) if (r.job.id === job.id) localRunning++
    const share = capShare({
      job,
      cap: c,
      self: this.id,
      owners,
      localRunning,
      frags: this.state.fragmentsOf(job.id),
      leaseLive: this.leaseLive
    })
    return { peers: owners, allowance: share.allowance }
  }

  private fragEntry(job: JobRegister, path: string, value: FragmentRegister): Entry {
    return { kind: 'frag', job: job.id, specHash: job.specHash, path, value }
  }

  private claim(targets: ClaimTarget[]): void {
    const writes: Entry[] = []
    const starts: Array<{ target: ClaimTarget; claim: Claim }> = []
    for (const t of targets) {
      if (this.running.has(t.key)) continue
      const wall = this.wall()
      if (t.hostLost > this.p.hostLostLimit) {
        // Lost with its host too often: fail for good, so a task that kills hosts cannot take down every daemon.
        const reg = t.register as FragmentRegister
        const lost = reg.claim as Claim
        const failed: Claim = {
          ...lost,
          seq: lost.seq + 1,
          phase: 'FAILED',
          reason: 'HOST_LOST',
          finishedAt: wall
        }
        this.w.onTerminalWrite(t.key, failed)
        this.trace(`fails ${t.key} for good: ${t.hostLost} tries lost with their host`)
        writes.push(this.fragEntry(t.job, t.path, { top: reg.top, claim: failed }))
        continue
      }
      const reg = newClaim(t.register, this.id, this.incarnation, t.attempt, t.hostLost, wall)
      if (reg.claim !== null && t.hostLost > (t.register?.claim?.hostLost ?? 0))
        reg.claim.reason = 'HOST_LOST'
      this.w.onClaim(this.id, t, reg)
      writes.push(this.fragEntry(t.job, t.path, reg))
      starts.push({ target: t, claim: reg.claim as Claim })
      this.claimableSince.delete(t.key)
    }
    // Merge locally first: a claim that already lost to one we merged is not started.
    const changed = this.apply(writes, 'local')
    for (const { target, claim } of starts) {
      const now = this.state.fragment(target.job.id, target.path)
      if (!sameClaim(now?.claim ?? null, claim)) continue
      this.startRun(target, claim)
    }
    this.announce(changed)
  }

  private startRun(t: ClaimTarget, claim: Claim): void {
    const token = fencingToken(t.key, claim)
    this.w.onRunStart(this.id, t.job, t.key, claim, token)
    const items = itemCount(t.job, t.path)
    const plan = this.w.planRun(t.job, t.path, items)
    const r: Run = { key: t.key, job: t.job, path: t.path, items, claim, token, plan, ended: false }
    this.running.set(t.key, r)
    if (t.job.spec.env['SIM_FENCED'] === '1') this.w.fenceTouch(t.key, token)
    this.trace(
      `run ${t.key} epoch ${claim.epoch} attempt ${claim.attempt} (${Math.round(plan.durationMs)}ms)`
    )
    this.later(plan.durationMs, 'io', () => this.endRun(r))
  }

  /** The task's process exited (on its own, or killed after its claim was lost). */
  private endRun(r: Run): void {
    if (r.ended || this.running.get(r.key) !== r) return
    r.ended = true
    if (r.abortedFor !== undefined) {
      this.running.delete(r.key)
      this.w.onRunEnd(this.id, r.job, r.key, 'aborted', false)
      this.wake()
      return
    }
    let exitCode: number | null = r.plan.exitCode
    // A fenced task commits its output at the end; the resource refuses an older token (exit 75).
    if (!r.plan.timedOut && exitCode === 0 && r.job.spec.env['SIM_FENCED'] === '1') {
      if (!this.w.fenceCommit(r.key, r.token)) exitCode = 75
    }
    if (r.plan.timedOut) exitCode = null
    const executed = !r.plan.timedOut && exitCode === 0
    const result: TryResult = {
      exitCode,
      signal: r.plan.timedOut ? 'SIGTERM' : null,
      timedOut: r.plan.timedOut,
      outputTooLarge: false,
      outcome: { exitCode, bytes: r.items * 8, sha256: OUTPUT_SHA, output: `out ${r.path}` },
      items: r.items
    }
    const next = claimAfterTry(r.claim, r.job.spec, result, this.wall())
    if (next.phase === 'SUCCEEDED' || next.phase === 'FAILED' || next.phase === 'SPLIT') {
      this.w.onTerminalWrite(r.key, next)
    }
    this.trace(`ran ${r.key} epoch ${r.claim.epoch}: exit ${exitCode} → ${next.phase}`)
    const reg = this.state.fragment(r.job.id, r.path)
    const entry = this.fragEntry(r.job, r.path, { top: reg?.top ?? r.claim.epoch, claim: next })
    this.announce(this.apply([entry], 'local'))
    this.running.delete(r.key)
    this.w.onRunEnd(this.id, r.job, r.key, 'recorded', executed)
    this.wake()
  }
}

const OUTPUT_SHA = '0'.repeat(64)
const WAKE_MS = 1
const MIN_TICK_GAP_MS = 5

/** Exponential backoff with jitter, derived from the fragment and attempt so every daemon agrees (scheduler.ts). */
function retryDelay(key: string, attempt: number, baseMs: number, maxMs: number): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 2))
  const jitter = (hash53(`${key}|${attempt}`) / 2 ** 53) * 0.5 - 0.25
  return Math.max(0, Math.round(exp * (1 + jitter)))
}

function sameValue(held: Entry, incoming: Entry): boolean {
  if (held.kind === 'frag' && incoming.kind === 'frag') {
    return held.value.top === incoming.value.top && held.value.claim === incoming.value.claim
  }
  return held.value === incoming.value
}

function sameClaim(a: Claim | null, b: Claim): boolean {
  return a !== null && a.epoch === b.epoch && a.holder === b.holder && a.incarnation === b.incarnation
}

function itemCount(job: JobRegister, path: string): number {
  const [lo, hi] = itemInterval(job.spec, path)
  return hi - lo
}
