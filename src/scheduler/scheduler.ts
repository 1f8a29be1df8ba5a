import { hash53 } from '../core/canonical.ts'
import {
  type ClaimJob,
  type ClaimTarget,
  capShare,
  newClaim,
  pickClaims,
  type TenantShare
} from '../core/claim.ts'
import type { TenantConfig } from '../core/config.ts'
import {
  canRun,
  peersSignature,
  type RankedPeer,
  RunnersCache,
  runsWhat,
  SlotOwnerCache
} from '../core/hrw.ts'
import type { MetricBatch } from '../core/metrics.ts'
import { claimAfterTry } from '../core/outcome.ts'
import type {
  AbortReason,
  BlobRef,
  Cancel,
  Clock,
  Log,
  MetricsSink,
  TaskResult,
  TaskRunner
} from '../core/ports.ts'
import {
  type Claim,
  type FragmentRegister,
  fencingToken,
  fragmentKey,
  fragmentKeyPrefix,
  isCancelled,
  type JobRegister,
  type Outcome,
  outputBlob,
  parseFragmentKey
} from '../core/register.ts'
import type { ResolvedSpec } from '../core/spec.ts'
import { fragmentItems, itemLine } from '../core/split.ts'
import { type Entry, entryJob } from '../core/state.ts'
import { isTerminalJobState, jobViewOf } from '../core/status.ts'
import { type TaskConfig, taskEnvironment } from '../core/task.ts'
import { logFailure } from '../store/errors.ts'
import type { ChangeSource, Replica } from '../store/replica.ts'

/** Options of the scheduler. */
export interface SchedulerInit {
  /** Fragments this daemon runs at once. */
  capacity: number
  /** A fragment unclaimed for rank × stealDelayMs may be taken by a lower-ranked daemon. */
  stealDelayMs: number
  /** Period of the claim loop when nothing else wakes it. */
  tickMs: number
  /** Lost tries after which a fragment fails for good. */
  hostLostLimit: number
  /** Grace between SIGTERM and SIGKILL. */
  killGraceMs: number
  /** Backoff before the first retry of a failed try; doubles per attempt, with ±25% jitter. */
  retryBackoffMs: number
  /** Longest backoff. */
  retryBackoffMaxMs: number
  /** Default cap on a fragment's stdout. */
  maxOutputBytes: number
  /** stdout up to this size is recorded inline; larger, as a blob (see SchedulerComponents.outputs). */
  inlineOutputBytes: number
  /** Default cap on a fragment's processes (a task may set its own). */
  maxProcesses: number
  /** PATH given to tasks. */
  taskPath: string
  /** Tenants' weights and running limits, by name (absent: weight 1, no limit). */
  tenants?: Readonly<Record<string, Pick<TenantConfig, 'weight' | 'maxRunning'>>>
  logger: Log
  /** Test-only seams: deliberate bugs the simulator must catch (see src/sim). Never set in a daemon. */
  seams?: SchedulerSeams
}

/** Deliberate bugs, planted only by the simulator's tests to prove its checks catch them. */
export interface SchedulerSeams {
  /**
   * Keep a job out of the scan for good once it was seen terminal (what this scheduler did
   * before the simulator found that a late success turns a FAILED job RUNNING again).
   */
  stickyFinished?: boolean
}

/** What the scheduler needs from the mesh (a narrow view, so tests can fake it). */
export interface SchedulerMesh {
  readonly peerId: string
  readonly isSynced: boolean
  /** Alive peers whose heartbeats name this daemon a suspect: claim nothing while any do. */
  suspectedBy(): string[]
  claimers(): RankedPeer[]
  leaseLive(holder: string, incarnation: number): boolean
  /** Has the holder been heard in a newer incarnation than this one? */
  superseded(holder: string, incarnation: number): boolean
  /** Silence after which the holder counts as suspect (suspectMs, longer in a large mesh). */
  suspectWindow(holder: string): number
  announce(entries: readonly Entry[]): void
}

export interface SchedulerComponents {
  replica: Replica
  mesh: SchedulerMesh
  runner: TaskRunner
  /**
   * Makes the copies of an output blob before its success is recorded, so a recorded output
   * survives the loss of this daemon (bounded in time; the output keeper repairs what it missed).
   */
  outputs: {
    /** `job`: whose output it is (the copies name it, so their holders check its registers before collecting). */
    secure(blob: BlobRef, job: string): Promise<boolean>
    /** Keep blobs from collection until released (a try's blobs until its claim is applied). */
    hold(blobs: readonly BlobRef[]): () => void
  }
  /** The task a job runs on this daemon, or undefined when this daemon may not run it. */
  tasks: (spec: ResolvedSpec) => TaskConfig | undefined
  incarnation: number
  clock: Clock
  /** Called after every finished try (metrics). */
  onTry?: (job: JobRegister, claim: Claim, result: TaskResult) => void
  /** Task metrics of the tries recorded here, with this daemon's own figures per try. */
  metrics?: MetricsSink
}

interface Running {
  key: string
  job: JobRegister
  path: string
  claim: Claim
  /** The share of a slot it takes (1, or 1/depth when its warm pool queues fragments). */
  weight: number
  /** It has its process, thread or worker (until then a drain hands it back). */
  started: boolean
  abort: AbortController
  /** Why it was aborted: the claim was lost or the job cancelled (record nothing), or handed back on leave. */
  abortedFor?: AbortReason
  done: Promise<void>
}

/**
 * The claim loop: ranks runnable fragments, claims into free slots, runs them, records their
 * results, and kills a run at once when it learns that a newer claim beat its own.
 */
export class Scheduler {
  private readonly init: SchedulerInit
  private readonly c: SchedulerComponents
  private readonly log: Log
  private readonly running = new Map<string, Running>()
  /** The slots the running fragments take, by weight. */
  private load = 0
  /** key → the register it was claimable in, and when this observer first saw it so. */
  private readonly claimableSince = new Map<string, { sig: string; at: number }>()
  /** The claimers as of the last scan, kept as one array while they stay the same (rank memo). */
  private peersView: { sig: string; peers: RankedPeer[] } = { sig: '', peers: [] }
  /** Slot owners of capped jobs, per membership (see capFor). */
  private readonly slotOwners = new SlotOwnerCache()
  /** The largest excess over maxConcurrency this daemon has seen in its view of any job. */
  maxOvershoot = 0
  /** The claimers that can run each task, per membership view. */
  private readonly runners = new RunnersCache()
  /** Slot owners of tenants with maxRunning, per membership, keyed `tenant:<name>`. */
  private readonly tenantSlotOwners = new SlotOwnerCache()
  /** The largest excess over its maxRunning this daemon has seen in its view, per tenant. */
  readonly tenantOvershoot = new Map<string, number>()
  /** When this observer first saw each fragment's current RUNNING claim (see overdue). */
  private readonly runningSeen = new Map<string, { sig: string; at: number }>()
  /** Jobs known to be finished: never scanned again. */
  private readonly finished = new Set<string>()
  /** Claim nothing before this (monotonic ms): this host could not start a task. */
  private pausedUntil = Number.NEGATIVE_INFINITY
  /** Fragments handed back on a leave, for the node to push to peers before it goes. */
  private handedBack: Entry[] = []
  /** When this observer first saw each job it may claim from (its unregistered fragments' wait). */
  private readonly jobSeen = new Map<string, number>()
  /** Per job, where the walk for own fragments resumes, for one membership view (see pickClaims). */
  private readonly ownScans = new Map<
    string,
    { peers: readonly RankedPeer[]; specHash: string; next: number }
  >()
  /** How long the last tick woken by a change took (ms): the next waits four times that. */
  private lastTickCost = 0
  private cancelLoop: Cancel | undefined
  private wakePending = false
  private lastTick = Number.NEGATIVE_INFINITY
  private claiming = false
  private draining = false
  private started = false
  private unsubscribe: (() => void) | undefined

  constructor(init: SchedulerInit, components: SchedulerComponents) {
    this.init = init
    this.c = components
    this.log = init.logger
  }

  get runningCount(): number {
    return this.running.size
  }

  get isClaiming(): boolean {
    return this.claiming
  }

  get isDraining(): boolean {
    return this.draining
  }

  /**
   * Drain (an operator's): claim nothing, hand back at once the fragments claimed here that have
   * not started (a warm pool's queue), let the others finish. Undrain: claim again.
   */
  drain(on: boolean): void {
    this.draining = on
    if (on) {
      for (const r of this.running.values())
        if (!r.started && r.abortedFor === undefined) this.abortRun(r, 'drain')
    } else this.wake()
  }

  start(): void {
    if (this.started) return
    this.started = true
    this.claiming = true
    this.unsubscribe = this.c.replica.onChange((changed, source) => this.onChange(changed, source))
    this.loop()
  }

  /** Wake the claim loop soon (coalesced). */
  wake(): void {
    if (this.wakePending || !this.claiming) return
    this.wakePending = true
    // A tick looks at every active job (its claimable fragments, from the leaf index); under a
    // storm of changes, leave at least four times the last tick's cost between two (1–20 ms), so
    // ticks take at most about a fifth of the CPU the tasks need, and cheap ones wait for nothing.
    const gap = Math.min(MAX_TICK_GAP_MS, Math.max(MIN_TICK_GAP_MS, 4 * this.lastTickCost))
    const wait = Math.max(0, this.lastTick + gap - this.c.clock.now())
    const run = (): void => {
      this.wakePending = false
      this.tick()
      this.lastTickCost = this.c.clock.now() - this.lastTick
    }
    this.c.clock.after(wait, run)
  }

  /**
   * Stop claiming; let running fragments finish for up to graceMs, then kill and hand back the
   * rest so others take them over at once.
   */
  async stop(graceMs: number): Promise<void> {
    if (!this.started) return
    this.claiming = false
    this.cancelLoop?.()
    const all = Promise.all([...this.running.values()].map((r) => r.done))
    let cancelGrace: Cancel | undefined
    const grace = new Promise<void>((resolve) => {
      cancelGrace = this.c.clock.after(graceMs, resolve)
    })
    await Promise.race([all, grace])
    cancelGrace?.()
    for (const r of this.running.values()) this.abortRun(r, 'handback')
    await all
    this.unsubscribe?.()
    this.started = false
  }

  /** The fragments handed back since the last call (on a leave: see ShoalNode.doLeave). */
  takeHandedBack(): Entry[] {
    return this.handedBack.splice(0)
  }

  private loop(): void {
    this.tick()
    if (this.claiming) this.cancelLoop = this.c.clock.after(this.init.tickMs, () => this.loop())
  }

  private onChange(changed: readonly Entry[], source: ChangeSource): void {
    // A job can leave a terminal state (a late success turns FAILED into SUCCEEDED, whose
    // remaining fragments must run): any change puts it back in the scan.
    if (this.init.seams?.stickyFinished !== true) for (const e of changed) this.finished.delete(entryJob(e))
    // Cancelled, compacted, or failed fast (here or anywhere): stop every run of the job at
    // once; none starts again. Only jobs with runs here are looked at, and only when what
    // changed can stop them: their job register, or a fragment failing in a failFast job (so a
    // storm of results does not rescan the job's fragments once per change).
    const mayStop = new Set<string>()
    for (const e of changed) {
      if (e.kind === 'job') mayStop.add(e.id)
      else if (e.kind === 'frag' && e.value.claim?.phase === 'FAILED') mayStop.add(e.job)
    }
    const stop = new Set<string>()
    for (const r of this.running.values()) {
      if (r.abortedFor !== undefined || !mayStop.has(r.job.id)) continue
      mayStop.delete(r.job.id) // each job once
      const job = this.c.replica.state.jobs.get(r.job.id)
      if (job === undefined) continue
      if (job.finished !== undefined || isCancelled(job)) stop.add(job.id)
      else if (job.spec.failFast === true && (this.c.replica.state.leaves(job.id)?.summary().FAILED ?? 0) > 0)
        stop.add(job.id)
    }
    for (const r of this.running.values()) {
      if (!stop.has(r.job.id) || r.abortedFor !== undefined) continue
      this.log.info({ job: r.job.id, path: r.path }, 'job cancelled or failed fast; killing the run')
      this.abortRun(r, 'cancel')
    }
    if (source === 'remote') {
      for (const e of changed) {
        if (e.kind !== 'frag') continue
        const r = this.running.get(fragmentKey(e.job, e.specHash, e.path))
        if (r !== undefined && r.abortedFor === undefined && !sameClaim(e.value.claim, r.claim)) {
          this.log.info(
            { job: r.job.id, path: r.path, epoch: r.claim.epoch, by: e.value.claim?.holder },
            'lost the claim; killing the run'
          )
          this.abortRun(r, 'lost')
        }
      }
    }
    this.wake()
  }

  /** Stop a run for a reason its runner sees (the signal's reason). */
  private abortRun(r: Running, why: AbortReason): void {
    r.abortedFor = why
    r.abort.abort(why)
  }

  /** Lease check with self included: our own claim is live only while a process backs it. */
  private readonly leaseLive = (holder: string, incarnation: number, key: string): boolean => {
    if (holder === this.c.mesh.peerId) return incarnation === this.c.incarnation && this.running.has(key)
    const seen = this.seenRunning(key)
    // The holder restarted since: the leases of its previous life lapse at once.
    if (this.c.mesh.superseded(holder, incarnation)) return false
    if (!this.c.mesh.leaseLive(holder, incarnation)) {
      // A claim learned only lately (a healed partition, a sync after a restart) is held by a
      // daemon whose silence began before we knew of the claim, and whose heartbeats are likely
      // right behind its state: give it two suspect windows from when we first saw it (the simulator
      // found healthy holders losing their runs to such take-overs right after heals).
      return seen !== undefined && this.c.clock.now() - seen < 2 * this.c.mesh.suspectWindow(holder)
    }
    return !this.overdue(key, holder, seen)
  }

  /** When this observer first saw the fragment's current RUNNING claim (undefined if none). */
  private seenRunning(key: string): number | undefined {
    const { jobId, specHash, path } = parseFragmentKey(key)
    const claim = this.c.replica.state.register(jobId, specHash, path)?.claim
    if (claim == null || claim.phase !== 'RUNNING') return undefined
    const sig = `${claim.epoch}|${claim.holder}|${claim.incarnation}`
    const seen = this.runningSeen.get(key)
    if (seen !== undefined && seen.sig === sig) return seen.at
    const now = this.c.clock.now()
    this.runningSeen.set(key, { sig, at: now })
    return now
  }

  /**
   * Safety net: a claim seen RUNNING (by this observer, on its own clock) for longer than the
   * job's lifespan + kill grace + two suspect windows has lost its run somewhere (the holder would have killed it at
   * the timeout and recorded the try), so its lease lapses even though the holder looks alive.
   */
  private overdue(key: string, holder: string, seen: number | undefined): boolean {
    if (seen === undefined) return false
    const job = this.c.replica.state.jobs.get(parseFragmentKey(key).jobId)
    const lifespanMs = (job?.spec.timeoutSeconds ?? Number.POSITIVE_INFINITY) * 1000
    return (
      this.c.clock.now() - seen > lifespanMs + this.init.killGraceMs + 2 * this.c.mesh.suspectWindow(holder)
    )
  }

  private forgetSince(jobId: string): void {
    const prefix = fragmentKeyPrefix(jobId)
    for (const key of this.claimableSince.keys()) if (key.startsWith(prefix)) this.claimableSince.delete(key)
    this.slotOwners.forget(jobId)
    this.jobSeen.delete(jobId)
    this.ownScans.delete(jobId)
    for (const key of this.runningSeen.keys()) if (key.startsWith(prefix)) this.runningSeen.delete(key)
  }

  private tick(): void {
    this.lastTick = this.c.clock.now()
    // A daemon that cannot write its state claims nothing (it could not record the results).
    if (!this.claiming || this.draining || !this.c.mesh.isSynced || !this.c.replica.writable) return
    if (this.lastTick < this.pausedUntil) return
    if (this.c.mesh.suspectedBy().length > 0) return
    const slots = this.init.capacity - this.load
    if (slots <= 1e-9) return
    const peers = this.claimers()
    if (!peers.some((p) => p.id === this.c.mesh.peerId)) return
    const jobs: ClaimJob[] = []
    const state = this.c.replica.state
    const now = this.c.clock.now()
    // Every tenant's active jobs (runnable here or not): their running fragments are its load.
    const tenants = new Map<string, JobRegister[]>()
    for (const job of state.jobs.values()) {
      if (this.finished.has(job.id)) continue
      if (this.ended(job)) {
        this.finished.add(job.id)
        this.forgetSince(job.id)
        continue
      }
      const own = tenants.get(job.tenant)
      if (own === undefined) tenants.set(job.tenant, [job])
      else own.push(job)
      if (this.c.tasks(job.spec) === undefined) continue
      if (!this.jobSeen.has(job.id)) this.jobSeen.set(job.id, now)
      jobs.push({ job, frags: state.fragmentsOf(job.id), leaves: state.leaves(job.id) })
    }
    if (jobs.length === 0) return
    const targets = pickClaims(
      {
        self: this.c.mesh.peerId,
        peers,
        leaseLive: this.leaseLive,
        claimableSince: (key, reg, job) => {
          // Unregistered top-level fragments: claimable since this observer first saw the job.
          if (reg === undefined && key.lastIndexOf('.') < key.lastIndexOf('/'))
            return this.jobSeen.get(job.id) ?? now
          const sig = reg?.claim == null ? '' : `${reg.claim.epoch}|${reg.claim.seq}|${reg.claim.holder}`
          const t = this.claimableSince.get(key)
          if (t !== undefined && t.sig === sig) return t.at
          this.claimableSince.set(key, { sig, at: now })
          return now
        },
        retryDelayMs: (t) =>
          retryDelay(t.key, t.attempt, this.init.retryBackoffMs, this.init.retryBackoffMaxMs),
        peersOf: (job) => this.runners.of(peers, job.spec),
        cap: (job) => this.capFor(job, peers, tenants.get(job.tenant) ?? []),
        weight: (job) => this.weight(job.spec),
        tenants: {
          of: (job) => job.tenant,
          share: (tenant) => this.tenantShare(tenant, tenants.get(tenant) ?? [], peers)
        },
        ownScan: {
          from: (job, view) => {
            const o = this.ownScans.get(job.id)
            return o !== undefined && o.peers === view && o.specHash === job.specHash ? o.next : 0
          },
          reached: (job, view, next) =>
            this.ownScans.set(job.id, { peers: view, specHash: job.specHash, next })
        },
        now,
        stealDelayMs: this.init.stealDelayMs
      },
      jobs,
      slots
    )
    if (targets.length === 0) return
    this.claim(targets)
  }

  /**
   * Has the job ended (nothing of it may be claimed)? From its leaf index: no walk of its
   * fragments.
   */
  private ended(job: JobRegister): boolean {
    if (job.finished !== undefined || isCancelled(job)) return true
    return isTerminalJobState(jobViewOf(job, this.c.replica.state.leaves(job.id)).state)
  }

  /** The claimers now, as the same array as last time when they did not change. */
  private claimers(): RankedPeer[] {
    const fresh = this.c.mesh.claimers()
    if (fresh === this.peersView.peers) return fresh
    const sig = peersSignature(fresh)
    if (sig !== this.peersView.sig) this.peersView = { sig, peers: fresh }
    return this.peersView.peers
  }

  /**
   * maxConcurrency without a coordinator (docs/decisions/005): slot s of a job belongs to the
   * claimer ranked first for `slot/<job>/<s>`, so with one membership view the owners' slots add
   * up to exactly the cap. A daemon starts fragments of the job only within the slots it owns,
   * and only while the job's live RUNNING claims it sees stay under the cap, so runs left over
   * from a previous ownership are waited out, never exceeded. With differing views each view
   * may hand a slot out once: at most one extra run per slot per view.
   */
  private capFor(
    job: JobRegister,
    peers: readonly RankedPeer[],
    tenantJobs: readonly JobRegister[]
  ): { peers: readonly RankedPeer[]; allowance: number } | undefined {
    // A tenant with maxRunning: its jobs are ranked among the owners of its slots that can run
    // them, and a capped job's slots are dealt out among those (so every owner of a job slot
    // owns a tenant slot).
    const tenantOwners = this.tenantOwners(job.tenant, peers, tenantJobs)
    const base =
      tenantOwners === undefined
        ? this.runners.of(peers, job.spec)
        : tenantOwners.filter((p) => canRun(p, job.spec))
    const c = job.spec.maxConcurrency
    if (c === undefined)
      return tenantOwners === undefined ? undefined : { peers: base, allowance: Number.POSITIVE_INFINITY }
    const owners = this.slotOwners.owners(job.id, c, base)
    let localRunning = 0
    for (const r of this.running.values()) if (r.job.id === job.id) localRunning++
    const share = capShare({
      cap: c,
      self: this.c.mesh.peerId,
      owners,
      localRunning,
      registers: [{ job, frags: this.c.replica.state.leaves(job.id)?.runningRegisters() ?? [] }],
      leaseLive: this.leaseLive
    })
    this.maxOvershoot = Math.max(this.maxOvershoot, share.seen - c)
    return { peers: owners, allowance: share.allowance }
  }

  /**
   * The owners of a tenant's maxRunning slots (undefined: no limit): dealt out among the peers
   * that can run some of its active jobs, so no slot sits with a daemon that can run none of its
   * work. (A job whose task none of the owners runs waits until the tenant's work changes.)
   */
  private tenantOwners(
    tenant: string,
    peers: readonly RankedPeer[],
    jobs: readonly JobRegister[]
  ): RankedPeer[] | undefined {
    const most = this.init.tenants?.[tenant]?.maxRunning
    if (most === undefined) return undefined
    const specs = new Map<string, ResolvedSpec>()
    for (const j of jobs) specs.set(runsWhat(j.spec), j.spec)
    const able = peers.filter((p) => [...specs.values()].some((spec) => canRun(p, spec)))
    return this.tenantSlotOwners.owners(`tenant:${tenant}`, most, able.length === peers.length ? peers : able)
  }

  /**
   * A tenant's standing for fair share: its weight, its fragments RUNNING across the mesh, and
   * with maxRunning, how many more this daemon may start (decision 018: within the tenant slots
   * it owns, and while the live RUNNING claims of the tenant's jobs it sees stay under the limit).
   */
  private tenantShare(
    tenant: string,
    jobs: readonly JobRegister[],
    peers: readonly RankedPeer[]
  ): TenantShare {
    const limits = this.init.tenants?.[tenant]
    const state = this.c.replica.state
    let running = 0
    for (const job of jobs) running += state.leaves(job.id)?.summary().RUNNING ?? 0
    const share = { weight: limits?.weight ?? 1, running, allowance: Number.POSITIVE_INFINITY }
    const most = limits?.maxRunning
    const owners = this.tenantOwners(tenant, peers, jobs)
    if (most === undefined || owners === undefined) return share
    let localRunning = 0
    for (const r of this.running.values()) if (r.job.tenant === tenant) localRunning++
    const counts = capShare({
      cap: most,
      self: this.c.mesh.peerId,
      owners,
      localRunning,
      registers: jobs.map((job) => ({ job, frags: state.leaves(job.id)?.runningRegisters() ?? [] })),
      leaseLive: this.leaseLive
    })
    // Live claims only: a dead holder's RUNNING claims stay in the registers until taken over,
    // and its runs are gone (or reaped when it restarts).
    this.tenantOvershoot.set(tenant, Math.max(this.tenantOvershoot.get(tenant) ?? 0, counts.live - most))
    return { ...share, allowance: counts.allowance }
  }

  private claim(targets: ClaimTarget[]): void {
    const writes: Entry[] = []
    const starts: Array<{ target: ClaimTarget; claim: Claim }> = []
    for (const t of targets) {
      if (this.running.has(t.key)) continue
      // Our own claim without a process (a crash of this incarnation's run) is re-claimed too.
      const wall = this.c.clock.wallNow()
      if (t.hostLost > this.init.hostLostLimit) {
        const reg = t.register as FragmentRegister
        const lost = reg.claim as Claim
        writes.push(this.entry(t, { top: reg.top, claim: failedHostLost(lost, wall) }))
        continue
      }
      const reg = newClaim(t.register, this.c.mesh.peerId, this.c.incarnation, t.attempt, t.hostLost, wall)
      // The try this claim replaces was lost with its host: say so until this one ends.
      if (reg.claim !== null && t.hostLost > (t.register?.claim?.hostLost ?? 0))
        reg.claim.reason = 'HOST_LOST'
      writes.push(this.entry(t, reg))
      starts.push({ target: t, claim: reg.claim as Claim })
      this.claimableSince.delete(t.key)
    }
    // Merge locally first: a claim that already lost to one we merged is not started.
    const state = this.c.replica.state
    const pending = this.c.replica.apply(writes, 'local')
    for (const { target, claim } of starts) {
      const now = state.register(target.job.id, target.job.specHash, target.path)
      if (!sameClaim(now?.claim ?? null, claim)) continue
      this.startRun(target, claim)
    }
    this.c.mesh.announce(writes)
    pending.catch((err: unknown) => logFailure(this.log, err, 'cannot persist claims'))
  }

  /** The share of a slot a fragment of the job takes here (see TaskRunner.depth). */
  private weight(spec: ResolvedSpec): number {
    const task = this.c.tasks(spec)
    if (task === undefined || this.c.runner.depth === undefined) return 1
    return 1 / Math.max(1, this.c.runner.depth(spec.task, task))
  }

  private entry(t: ClaimTarget, value: FragmentRegister): Entry {
    return { kind: 'frag', job: t.job.id, specHash: t.job.specHash, path: t.path, value }
  }

  private startRun(t: ClaimTarget, claim: Claim): void {
    const task = this.c.tasks(t.job.spec)
    if (task === undefined) return
    const abort = new AbortController()
    const weight = this.weight(t.job.spec)
    const r: Running = {
      key: t.key,
      job: t.job,
      path: t.path,
      claim,
      weight,
      started: false,
      abort,
      done: Promise.resolve()
    }
    this.running.set(t.key, r)
    this.load += weight
    r.done = this.execute(r, task)
      .catch((err: unknown) =>
        logFailure(this.log, err, 'cannot record the run', { job: t.job.id, path: t.path })
      )
      .finally(() => {
        this.running.delete(t.key)
        this.load = this.running.size === 0 ? 0 : this.load - weight
        this.wake()
      })
  }

  private async execute(r: Running, task: TaskConfig): Promise<void> {
    const spec = r.job.spec
    const items = fragmentItems(spec, r.path)
    const token = fencingToken(r.key, r.claim)
    const env = taskEnvironment(this.init.taskPath, task, spec.env, {
      jobId: r.job.id,
      path: r.path,
      fragmentCount: spec.fragmentCount,
      attempt: r.claim.attempt,
      leaseEpoch: token,
      peerId: this.c.mesh.peerId
    })
    const result = await this.c.runner.run({
      fragment: { job: r.job, path: r.path, key: r.key, claim: r.claim, token, items: items.length },
      taskName: spec.command !== undefined ? '(ad hoc)' : spec.task,
      task,
      command: task.command ?? [],
      env,
      items,
      lines: items.map(itemLine),
      timeoutMs: spec.timeoutSeconds * 1000,
      killGraceMs: this.init.killGraceMs,
      maxOutputBytes: task.maxOutputBytes ?? this.init.maxOutputBytes,
      inlineOutputBytes: this.init.inlineOutputBytes,
      maxProcesses: task.maxProcesses ?? this.init.maxProcesses,
      onStart: () => {
        r.started = true
      },
      signal: r.abort.signal,
      ...(task.uid !== undefined ? { uid: task.uid } : {}),
      ...(task.gid !== undefined ? { gid: task.gid } : {})
    })
    // The try's blobs are referenced by no register until its claim is applied: hold them.
    const release = this.c.outputs.hold([
      ...(result.stored ? [{ sha256: result.sha256, bytes: result.bytes }] : []),
      ...(result.stderrBlob !== undefined ? [result.stderrBlob] : [])
    ])
    try {
      await this.record(r, result, items.length)
    } finally {
      release()
    }
  }

  /** Hand a recorded try's metrics, and this daemon's figures of it, to be aggregated. */
  private metricsOf(r: Running, result: TaskResult, next: Claim): void {
    const sink = this.c.metrics
    if (sink === undefined) return
    const task = r.job.spec.command !== undefined ? '(ad hoc)' : r.job.spec.task
    const own = ownFigures(r, result, next, this.c.clock.wallNow())
    const ours = r.claim
    sink.add(
      r.job.id,
      task,
      result.metrics !== undefined ? [...result.metrics, ...own] : own,
      result.metricsDropped ?? 0,
      // Still this try's fragment: the register holds this claim, or a later try (a retry after
      // this one failed, a retry round). Another claim of the same try won: a run that lost.
      () => {
        const now = this.c.replica.state.register(r.job.id, r.job.specHash, r.path)?.claim
        if (now === null || now === undefined || sameClaim(now, ours)) return true
        return (now.generation ?? 0) > (ours.generation ?? 0) || now.attempt > ours.attempt
      }
    )
  }

  /** Record how a try ended (or hand it back), unless its claim was lost meanwhile. */
  private async record(r: Running, result: TaskResult, items: number): Promise<void> {
    const spec = r.job.spec
    this.c.onTry?.(r.job, r.claim, result)
    // A lost claim records nothing (the winner will). A run killed because its job was
    // cancelled or failed fast is handed back like one on leave: a retry may lift the stop, and
    // its claim must not then look like a try lost with its host.
    if (r.abortedFor === 'lost') return
    let next: Claim
    let handback = false
    if (
      r.abortedFor === 'handback' ||
      r.abortedFor === 'drain' ||
      r.abortedFor === 'cancel' ||
      result.hostFault === true
    ) {
      // Hand the fragment back untouched: same attempt, next seq, so anyone may claim it now.
      next = { ...r.claim, seq: r.claim.seq + 1, phase: 'RUNNABLE' }
      handback = r.abortedFor === 'handback'
      if (result.hostFault === true) {
        // This host cannot run tasks now (a full disk): claim nothing for a while, say so once.
        if (this.c.clock.now() >= this.pausedUntil)
          this.log.warn(
            { err: result.spawnError, pauseMs: HOST_FAULT_PAUSE_MS },
            'cannot run tasks here; handing back and pausing claims'
          )
        this.pausedUntil = this.c.clock.now() + HOST_FAULT_PAUSE_MS
      }
    } else {
      const outcome: Outcome = {
        exitCode: result.exitCode,
        bytes: result.bytes,
        sha256: result.sha256,
        ...(result.stored ? { blob: true } : { output: result.stdout }),
        ...(result.signal !== null ? { signal: result.signal } : {}),
        ...(result.stderrTail !== '' ? { log: result.stderrTail } : {})
      }
      next = claimAfterTry(r.claim, spec, { ...result, outcome, items }, this.c.clock.wallNow())
      // A recorded output must outlive this daemon: copy it first. If no other daemon took a
      // copy, the fragment is handed back to run again rather than recorded with one copy.
      const blob = outputBlob(next)
      if (blob !== undefined && !(await this.c.outputs.secure(blob, r.job.id))) {
        // As when this host cannot start a task: hand back, and claim nothing for a while, so
        // another daemon may run it and the same copy is not tried again at once.
        this.log.warn(
          { job: r.job.id, fragment: r.path, blob: blob.sha256, pauseMs: HOST_FAULT_PAUSE_MS },
          'no daemon took a copy of the output; handing the fragment back and pausing claims'
        )
        this.pausedUntil = this.c.clock.now() + HOST_FAULT_PAUSE_MS
        next = { ...r.claim, seq: r.claim.seq + 1, phase: 'RUNNABLE' }
      }
      if (r.abortedFor === 'lost') return
      if (next.reason !== undefined) {
        // One line per failed try, with what the task said last.
        this.log.warn(
          {
            job: r.job.id,
            fragment: r.path,
            attempt: r.claim.attempt,
            exitCode: result.exitCode,
            reason: next.reason,
            next: next.phase,
            stderr: result.stderrTail.trimEnd().split('\n').pop() ?? ''
          },
          'try failed'
        )
      }
    }
    // A try that counts (it ended, or failed into a retry) brings its metrics; one handed back
    // (cancel, leave, a fault of this host) ran for nobody, and one whose claim another beat here
    // is not the fragment's try.
    // The register of the spec this run was claimed under (a rival spec may have won since).
    const reg = this.c.replica.state.register(r.job.id, r.job.specHash, r.path)
    const ours = reg?.claim === null || reg?.claim === undefined || sameClaim(reg.claim, r.claim)
    if (ours && (next.phase !== 'RUNNABLE' || next.attempt > r.claim.attempt)) this.metricsOf(r, result, next)
    const entry: Entry = {
      kind: 'frag',
      job: r.job.id,
      specHash: r.job.specHash,
      path: r.path,
      value: { top: reg?.top ?? r.claim.epoch, claim: next }
    }
    // Merged in memory at once (queries, the next tick and the output keeper see it), announced,
    // and written in the next group commit: the run's slot is free without waiting for the
    // disk. A write that fails is kept and retried by the replica, never dropped (and others
    // hold the result once they heard it).
    const pending = this.c.replica.apply([entry], 'local')
    this.c.mesh.announce([entry])
    if (handback) this.handedBack.push(entry)
    pending.catch((err: unknown) =>
      logFailure(this.log, err, 'cannot persist a result', { job: r.job.id, path: r.path })
    )
  }
}

/** The figures of every recorded try: how long it ran, how long it waited, its output, its result. */
function ownFigures(
  r: { job: JobRegister; claim: Claim },
  result: TaskResult,
  next: Claim,
  wall: number
): MetricBatch[] {
  const outcome =
    next.phase === 'SUCCEEDED' || next.phase === 'SPLIT' ? next.phase : (next.reason ?? next.phase)
  const startedAt = r.claim.startedAt ?? wall - result.durationMs
  return [
    { name: 'shoal_run_seconds', values: [result.durationMs / 1000] },
    { name: 'shoal_queue_seconds', values: [Math.max(0, startedAt - r.job.createdAt) / 1000] },
    { name: 'shoal_output_bytes', values: [result.bytes] },
    { name: 'shoal_tries', labels: { result: outcome }, values: [1] }
  ]
}

/** Exponential backoff with jitter, derived from the fragment and attempt so every daemon agrees. */
export function retryDelay(key: string, attempt: number, baseMs: number, maxMs: number): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 2))
  const jitter = (hash53(`${key}|${attempt}`) / 2 ** 53) * 0.5 - 0.25
  return Math.max(0, Math.round(exp * (1 + jitter)))
}

const MIN_TICK_GAP_MS = 1
const MAX_TICK_GAP_MS = 20
/** How long a daemon that could not start a task (no work dir) claims nothing. */
const HOST_FAULT_PAUSE_MS = 5000

function sameClaim(a: Claim | null, b: Claim): boolean {
  return a !== null && a.epoch === b.epoch && a.holder === b.holder && a.incarnation === b.incarnation
}

function failedHostLost(lost: Claim, wall: number): Claim {
  return { ...lost, seq: lost.seq + 1, phase: 'FAILED', reason: 'HOST_LOST', finishedAt: wall }
}
