import { mkdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import { ulid } from 'ulid'
import type { DaemonState, FragmentRecord, Health, JobSummary, SubmitAnswer } from '../core/api.ts'
import { ShoalError } from '../core/errors.ts'
import { rankPeers } from '../core/hrw.ts'
import type { FinishedSummary, JobRegister } from '../core/register.ts'
import { chooseFragmentSize, updateSecondsPerItem } from '../core/sizing.ts'
import {
  DEFAULT_TIMEOUT_SECONDS,
  idempotentJobId,
  itemCountOf,
  type JobSpecInput,
  resolveSpec,
  specHashOf
} from '../core/spec.ts'
import { itemInterval } from '../core/split.ts'
import type { Entry } from '../core/state.ts'
import {
  fragmentView,
  isTerminalJobState,
  JOB_STATES,
  type JobState,
  jobView,
  leafFragments
} from '../core/status.ts'
import { loadIdentity } from '../mesh/identity.ts'
import type { PeerView } from '../mesh/membership.ts'
import { Mesh } from '../mesh/mesh.ts'
import { Scheduler } from '../scheduler/scheduler.ts'
import { type LevelStore, Replica, type StoreError, storeErrorOf } from '../store/index.ts'
import { Containment } from '../worker/cgroup.ts'
import { CommandExecutor } from '../worker/command.ts'
import type { DaemonConfig } from './config.ts'
import { openStateStore, STATE_DIR, startupError } from './datadir.ts'
import { Metrics } from './metrics.ts'

export const VERSION = '0.1.0'

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString())

/**
 * The composition root: builds the store, replica, mesh, executor and scheduler, owns their
 * start/stop order, and answers the queries of the HTTP API for the whole cluster from the
 * replicated state.
 */
export class Daemon {
  readonly config: DaemonConfig
  readonly log: Logger
  private store: LevelStore | undefined
  private replica: Replica | undefined
  private mesh: Mesh | undefined
  private scheduler: Scheduler | undefined
  private executor: CommandExecutor | undefined
  private metricsImpl: Metrics | undefined
  private containment: Containment | undefined
  /** Where this daemon is in its life (one state, not a set of flags). */
  private life: DaemonState = 'starting'
  private apiUrl = ''
  private peerIdStr = ''
  private incarnationNo = 0
  private leaving: Promise<void> | undefined
  private closing: Promise<void> | undefined
  private housekeeping: NodeJS.Timeout | undefined
  /** When this daemon first saw each job in a terminal state (monotonic ms). */
  private readonly terminalSince = new Map<string, number>()
  private lastSyncNoted = 0
  /** Measured seconds per item of each task, from every daemon's results (for sizing). */
  private readonly taskSpeed = new Map<string, { secondsPerItem: number; samples: number }>()

  constructor(config: DaemonConfig, log: Logger) {
    this.config = config
    this.log = log
  }

  get peerId(): string {
    return this.peerIdStr
  }

  get incarnation(): number {
    return this.incarnationNo
  }

  get metrics(): Metrics {
    return this.must(this.metricsImpl)
  }

  setApiUrl(url: string): void {
    this.apiUrl = url
  }

  multiaddrs(): string[] {
    return this.mesh?.multiaddrs() ?? []
  }

  /** Start everything in order; a failed start rolls back what had started. */
  async start(): Promise<void> {
    const cfg = this.config
    const log = this.log
    await mkdir(cfg.dataDir, { recursive: true, mode: 0o700 })
    // The store's lock is the data dir's: take it before touching anything else in the data dir
    // (a second daemon started on a live data dir must leave the first one's work alone).
    this.store = await openStateStore(cfg.dataDir, { resetState: cfg.resetState, log })
    try {
      const workDir = join(cfg.dataDir, 'work')
      // What holds a task's processes together: cgroups where this host allows, else process groups.
      const containment = Containment.detect(cfg.dataDir)
      this.containment = containment
      log.info(
        { containment: containment.kind, processCap: containment.plan.pids ?? null },
        `tasks run in ${containment.kind} containment`
      )
      await CommandExecutor.reapOrphans(workDir, log.child({ component: 'worker' }), containment)
      await rm(workDir, { recursive: true, force: true })
      await mkdir(workDir, { recursive: true })
      const privateKey = await loadIdentity(cfg.dataDir)
      this.peerIdStr = peerIdFromPrivateKey(privateKey).toString()
      // Every start bumps a synced incarnation: leases of the previous life lapse at our first heartbeat.
      const stored = (await this.store.getMeta<number>('incarnation')) ?? 0
      // In ms, so even a restart within the same second as a lost life gets a higher number.
      this.incarnationNo = Math.max(stored + 1, Date.now())
      await this.store.putMeta('incarnation', this.incarnationNo, { sync: true })

      // Tombstone rule: a daemon out of sync for longer than tombstones live may hold fragments
      // of jobs whose summaries were since dropped; it wipes its replicated state and resyncs.
      const lastSync = await this.store.getMeta<number>('lastSyncAt')
      if (lastSync !== undefined && Date.now() - lastSync > (cfg.tombstoneDays - 1) * 86_400_000) {
        log.warn(
          { lastSync: new Date(lastSync).toISOString() },
          'last sync older than the tombstones: wiping state'
        )
        await this.store.clearState()
      }
      const replica = new Replica(this.store)
      this.replica = replica
      replica.onChange((changed) => this.measure(changed))
      replica.onHealth((failure) => this.onStoreHealth(failure))
      const loaded = await replica.load().catch((err: unknown) => {
        throw startupError(storeErrorOf(err, join(cfg.dataDir, STATE_DIR), 'open'))
      })
      log.info({ registers: loaded, jobs: replica.state.jobs.size }, 'state loaded')

      this.metricsImpl = new Metrics({
        running: () => this.scheduler?.runningCount ?? 0,
        stalls: () => this.mesh?.membership.stalls ?? 0,
        overshoot: () => this.scheduler?.maxOvershoot ?? 0,
        rejected: () => this.mesh?.rejected ?? 0,
        peers: () => countBy(this.peers(), (p) => p.state),
        jobs: () => countBy(this.listJobs(), (j) => j.state),
        writable: () => this.replica?.writable ?? false
      })
      const mesh = new Mesh(
        {
          privateKey,
          listen: cfg.listen,
          bootstrap: cfg.bootstrap,
          peerStoreDir: join(cfg.dataDir, 'peers'),
          name: cfg.name,
          incarnation: this.incarnationNo,
          apiUrl: () => this.apiUrl,
          heartbeatMs: cfg.heartbeatMs,
          suspectMs: cfg.suspectMs,
          syncIntervalMs: cfg.syncIntervalMs,
          syncGraceMs: Math.max(2 * cfg.suspectMs, 2000),
          // A daemon that held state had peers: it waits to hear from them before claiming.
          firstStart: loaded === 0,
          maxDialPeers: cfg.maxDialPeers,
          deltaBatchMs: cfg.deltaBatchMs,
          ...(cfg.swarmKey !== undefined ? { swarmKey: await readFile(cfg.swarmKey) } : {}),
          logger: log.child({ component: 'mesh' })
        },
        {
          replica,
          load: () => ({
            capacity: cfg.capacity,
            running: this.scheduler?.runningCount ?? 0,
            // Claims only while alive (others stop ranking it as soon as it leaves) and able to
            // write its state; announced as left once everything is recorded or handed back.
            claiming: this.life === 'alive' && this.replica?.writable !== false,
            leaving: this.life === 'left' || this.life === 'stopped'
          })
        },
        this.peerIdStr
      )
      this.mesh = mesh
      const executor = new CommandExecutor(workDir, log.child({ component: 'worker' }), containment)
      this.executor = executor
      const scheduler = new Scheduler(
        {
          capacity: cfg.capacity,
          stealDelayMs: cfg.stealDelayMs,
          tickMs: cfg.tickMs,
          hostLostLimit: cfg.hostLostLimit,
          killGraceMs: cfg.killGraceMs,
          suspectMs: cfg.suspectMs,
          retryBackoffMs: cfg.retryBackoffMs,
          retryBackoffMaxMs: cfg.retryBackoffMaxMs,
          maxOutputBytes: cfg.maxOutputBytes,
          maxProcesses: cfg.maxProcesses,
          taskPath: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
          logger: log.child({ component: 'scheduler' })
        },
        {
          replica,
          mesh: {
            peerId: this.peerIdStr,
            get isSynced() {
              return mesh.isSynced
            },
            suspectedBy: () => mesh.membership.suspectedBy(),
            claimers: () => mesh.claimers().map((p) => ({ id: p.peerId, capacity: p.capacity })),
            leaseLive: (holder, inc) => mesh.membership.leaseLive(holder, inc),
            superseded: (holder, inc) => mesh.membership.superseded(holder, inc),
            announce: (entries) => mesh.announce(entries)
          },
          executor,
          // An ad-hoc command runs only where the operator allowed ad-hoc commands.
          tasks: (spec) =>
            spec.command !== undefined
              ? cfg.allowAdHocCommands
                ? { command: spec.command }
                : undefined
              : cfg.tasks[spec.task],
          incarnation: this.incarnationNo,
          now: () => performance.now(),
          wallNow: () => Date.now(),
          onTry: (_job, _claim, result) => {
            const outcome = result.aborted
              ? 'aborted'
              : result.timedOut
                ? 'timeout'
                : result.exitCode === 0
                  ? 'success'
                  : 'failure'
            this.metrics.tries.inc({ result: outcome })
            this.metrics.tryDuration.observe(result.durationMs / 1000)
          }
        }
      )
      this.scheduler = scheduler
      mesh.on('membership', () => scheduler.wake())
      mesh.on('pulled', () => this.noteSync())
      this.housekeeping = setInterval(
        () => {
          this.compact().catch((err: unknown) => log.error({ err }, 'compaction failed'))
        },
        Math.max(100, Math.min(60_000, Math.floor(cfg.retainFinishedMs / 2)))
      )
      await mesh.start()
      scheduler.start()
      this.life = 'alive'
    } catch (err) {
      await this.stop(0).catch((e: unknown) => log.error({ err: e }, 'rollback failed'))
      throw err
    }
  }

  /**
   * The state store went out of service (a full disk, a failed write) or came back. While it
   * is out, this daemon claims nothing (others stop ranking it), refuses submits and cancels
   * with 507/503, and keeps serving reads; the replica brings the store back by itself.
   */
  private onStoreHealth(failure: StoreError | undefined): void {
    if (failure !== undefined) {
      this.metrics.storageFailures.inc()
      this.log.error(
        { failure: failure.failure, location: failure.location, err: failure.message },
        'state store out of service: refusing writes, claiming nothing, retrying'
      )
    } else {
      this.log.info('state store back in service; the whole state was written again')
      this.scheduler?.wake()
    }
    this.mesh?.heartbeatNow()
  }

  /** Learn each task's time per item from succeeded fragments (wall times of one holder). */
  private measure(changed: readonly Entry[]): void {
    const state = this.replica?.state
    if (state === undefined) return
    for (const e of changed) {
      if (e.kind !== 'frag') continue
      const c = e.value.claim
      if (c?.phase !== 'SUCCEEDED' || c.startedAt === undefined || c.finishedAt === undefined) continue
      const job = state.jobs.get(e.job)
      if (job === undefined || job.specHash !== e.specHash) continue
      let items: number
      try {
        const [lo, hi] = itemInterval(job.spec, e.path)
        items = hi - lo
      } catch {
        continue
      }
      if (items <= 0) continue
      const sample = Math.max(0, c.finishedAt - c.startedAt) / 1000 / items
      const prev = this.taskSpeed.get(job.spec.task)
      this.taskSpeed.set(job.spec.task, {
        secondsPerItem: updateSecondsPerItem(prev?.secondsPerItem, sample),
        samples: (prev?.samples ?? 0) + 1
      })
    }
  }

  /** Where this daemon is in its life. */
  get state(): DaemonState {
    return this.life
  }

  /** Graceful stop: leave (stop claiming, let runs finish up to graceMs, hand back the rest), then close. */
  async stop(graceMs = this.config.shutdownGraceMs): Promise<void> {
    // close() runs whatever the leave did, and itself reports a failed leave (it awaits it too).
    await this.leave(graceMs).catch(() => undefined)
    await this.close()
  }

  /**
   * Leave the mesh without shutting down: claim nothing more (others stop ranking this daemon at
   * once, its leases stay live), let running fragments finish for up to graceMs, hand back the
   * rest, then announce that it left, so others take over without waiting for suspicion. The
   * store and mesh stay open (reads are still served). Idempotent: every call gets one promise.
   */
  leave(graceMs = this.config.shutdownGraceMs): Promise<void> {
    this.leaving ??= this.doLeave(graceMs)
    return this.leaving
  }

  /**
   * Shut down: whatever still runs is killed and handed back at once (a leave with no grace, if
   * none happened), the state is flushed, the mesh and the store are closed. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.doClose()
    return this.closing
  }

  /** Record (at most once a minute) that this daemon is in sync, for the tombstone rule. */
  private noteSync(): void {
    const now = Date.now()
    if (now - this.lastSyncNoted < 60_000) return
    this.lastSyncNoted = now
    this.store?.putMeta('lastSyncAt', now).catch((err: unknown) => this.log.warn({ err }, 'cannot note sync'))
  }

  /**
   * Compaction (DESIGN "Persistence"): retainFinishedMs after this daemon first saw a job end,
   * it writes the job's summary, which absorbs every fragment register of the job; any daemon
   * may do it, and concurrent summaries merge. Summaries older than tombstoneDays are dropped.
   */
  private async compact(): Promise<void> {
    const replica = this.replica
    if (replica === undefined || this.mesh === undefined) return
    const cfg = this.config
    const mono = performance.now()
    const writes: Entry[] = []
    for (const job of replica.state.jobs.values()) {
      if (job.finished !== undefined) {
        if (Date.now() - job.finished.compactedAt > cfg.tombstoneDays * 86_400_000)
          await replica.dropJob(job.id)
        continue
      }
      const frags = replica.state.fragmentsOf(job.id)
      const view = jobView(job, frags)
      if (!isTerminalJobState(view.state) || view.statusSummary.RUNNING > 0) {
        this.terminalSince.delete(job.id)
        continue
      }
      const since = this.terminalSince.get(job.id)
      if (since === undefined) {
        this.terminalSince.set(job.id, mono)
        continue
      }
      if (mono - since < cfg.retainFinishedMs) continue
      const finished: FinishedSummary = {
        state: view.state as FinishedSummary['state'],
        statusSummary: view.statusSummary,
        fragments: leafFragments(job.spec, frags).length,
        startedAt: view.startedAt,
        finishedAt: view.finishedAt,
        compactedAt: Date.now()
      }
      if (cfg.compactedOutput === 'keep') {
        const { chunks } = await this.output(job.id)
        if (chunks.reduce((n, c) => n + c.length, 0) <= 1024 * 1024) finished.output = chunks
      }
      writes.push({ kind: 'job', id: job.id, value: { ...job, finished } })
      this.terminalSince.delete(job.id)
    }
    if (writes.length === 0) return
    const changed = await replica.apply(writes, 'local', { sync: true })
    this.mesh.announce(changed)
    this.log.info({ jobs: changed.length }, 'compacted finished jobs')
  }

  private async doLeave(graceMs: number): Promise<void> {
    clearInterval(this.housekeeping)
    if (this.life === 'starting' || this.life === 'alive') this.life = 'leaving'
    this.mesh?.heartbeatNow()
    try {
      await this.scheduler?.stop(graceMs)
      await this.executor?.settle()
    } finally {
      // Left: everything is recorded or handed back; others take over without waiting.
      if (this.life === 'leaving') this.life = 'left'
      this.mesh?.heartbeatNow()
    }
  }

  private async doClose(): Promise<void> {
    const errors: unknown[] = []
    const step = async (what: string, fn: () => Promise<void> | undefined): Promise<void> => {
      try {
        await fn()
      } catch (err) {
        errors.push(err)
        this.log.error({ err, step: what }, 'stop step failed')
      }
    }
    await step('leave', () => this.leave(0))
    await step('replica', () => this.replica?.flush())
    this.replica?.close()
    await step('mesh', () => this.mesh?.stop())
    await step('store', () => this.store?.close())
    this.life = 'stopped'
    if (errors.length > 0) throw new AggregateError(errors, 'daemon stop had errors')
  }

  // ---- queries and commands (the API calls these) ----

  private must<T>(x: T | undefined): T {
    if (x === undefined) throw new ShoalError('UNAVAILABLE', 'the daemon is not started')
    return x
  }

  /** Accept a job: validate against this daemon's tasks, resolve, store (synced), announce. */
  async submit(input: JobSpecInput, tenant = 'default'): Promise<SubmitAnswer> {
    const replica = this.must(this.replica)
    const cfg = this.config
    if (input.command !== undefined && !cfg.allowAdHocCommands) {
      throw new ShoalError(
        'AD_HOC_NOT_ALLOWED',
        'command: ad-hoc commands are off on this daemon (allowAdHocCommands); name a configured task'
      )
    }
    const task = input.command !== undefined ? { command: input.command } : cfg.tasks[input.task]
    if (task === undefined) {
      throw new ShoalError(
        'TASK_NOT_ALLOWED',
        `task: "${input.task}" is not a task of this daemon (known: ${Object.keys(cfg.tasks).sort().join(', ')})`
      )
    }
    const failure = replica.failure
    if (failure !== undefined) throw refused(failure, 'the job was not accepted')
    const itemCount = itemCountOf(input)
    const timeoutSeconds = input.timeoutSeconds ?? task.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS
    const measured = this.taskSpeed.get(input.task)
    const fragmentSize =
      input.fragmentSize ??
      chooseFragmentSize({
        items: itemCount,
        timeoutSeconds,
        slots: this.must(this.mesh)
          .claimers()
          .reduce((n, p) => n + p.capacity, 0),
        ...(task.fragmentSize !== undefined ? { hint: task.fragmentSize } : {}),
        ...(measured !== undefined ? measured : {})
      })
    const spec = resolveSpec({ ...input, fragmentSize }, { timeoutSeconds: task.timeoutSeconds })
    if (spec.itemCount > cfg.maxItemsPerJob) {
      throw new ShoalError(
        'INVALID_SPEC',
        `items: ${spec.itemCount} items is more than the limit of ${cfg.maxItemsPerJob}`
      )
    }
    if (spec.fragmentCount > cfg.maxFragmentsPerJob) {
      throw new ShoalError(
        'INVALID_SPEC',
        `fragmentSize: ${spec.fragmentCount} fragments is more than the limit of ${cfg.maxFragmentsPerJob}`
      )
    }
    const specHash = specHashOf(spec)
    const id = spec.idempotencyKey !== undefined ? idempotentJobId(tenant, spec.idempotencyKey) : ulid()
    const existing = replica.state.jobs.get(id)
    if (existing !== undefined) {
      if (existing.specHash !== specHash) {
        throw new ShoalError(
          'IDEMPOTENCY_CONFLICT',
          `idempotencyKey: "${spec.idempotencyKey}" was used for job ${id} with a different spec`
        )
      }
      return { ...this.summary(existing), replicas: 1, existing: true }
    }
    const job: JobRegister = {
      id,
      tenant,
      spec,
      specHash,
      createdAt: Date.now(),
      cancelled: false,
      acceptedBy: this.peerIdStr
    }
    const entry: Entry = { kind: 'job', id, value: job }
    // Written to disk before anyone can see it: a job refused for want of disk leaves no trace.
    const changed = await replica.applyDurably([entry]).catch((err: unknown) => {
      throw refused(err, 'the job was not accepted')
    })
    const mesh = this.must(this.mesh)
    mesh.announce(changed)
    const replicas = 1 + (await this.replicate(id, [entry]))
    this.metrics.jobsAccepted.inc()
    this.log.info({ job: id, task: spec.task, fragments: spec.fragmentCount, replicas }, 'job accepted')
    return { ...this.summary(replica.state.jobs.get(id) ?? job), replicas, existing: false }
  }

  /** Alive peers (not self) ranked by rendezvous on a job id: where its extra copies live. */
  private replicaPeers(jobId: string): string[] {
    const peers = this.must(this.mesh)
      .peers()
      .filter((p) => !p.self && p.state === 'alive' && !p.leaving)
      .map((p) => ({ id: p.peerId, capacity: 1 }))
    return rankPeers(jobId, peers).map((p) => p.id)
  }

  /**
   * Push a new job to the next ackReplicas - 1 live peers by rendezvous on its id and wait for
   * their synced acks, up to ackTimeoutMs; a peer that fails is replaced by the next in rank.
   * Resolves with the number of peers that acknowledged.
   */
  private async replicate(jobId: string, entries: Entry[]): Promise<number> {
    const want = this.config.ackReplicas - 1
    if (want <= 0) return 0
    const mesh = this.must(this.mesh)
    const candidates = this.replicaPeers(jobId)
    const deadline = performance.now() + this.config.ackTimeoutMs
    let acked = 0
    while (acked < want && candidates.length > 0) {
      const left = Math.floor(deadline - performance.now())
      if (left <= 0) break
      const batch = candidates.splice(0, want - acked)
      const results = await Promise.allSettled(batch.map((p) => mesh.push(p, entries, left)))
      for (const [i, r] of results.entries()) {
        if (r.status === 'fulfilled') acked++
        else this.log.debug({ peer: batch[i], err: String(r.reason) }, 'replica push failed')
      }
    }
    return acked
  }

  private summary(job: JobRegister): JobSummary {
    const view = jobView(job, this.must(this.replica).state.fragmentsOf(job.id))
    const s: JobSummary = {
      id: job.id,
      state: view.state,
      task: job.spec.task,
      fragments: job.spec.fragmentCount,
      items: job.spec.itemCount,
      fragmentSize: job.spec.fragmentSize,
      priority: job.spec.priority,
      statusSummary: view.statusSummary,
      createdAt: new Date(job.createdAt).toISOString(),
      startedAt: iso(view.startedAt),
      finishedAt: iso(view.finishedAt),
      acceptedBy: job.acceptedBy
    }
    if (job.spec.name !== undefined) s.name = job.spec.name
    if (job.spec.labels !== undefined) s.labels = job.spec.labels
    if (job.conflicts !== undefined) s.conflicts = job.conflicts
    s.compacted = job.finished !== undefined
    return s
  }

  /** Job summaries, newest first, optionally of one state. */
  listJobs(state?: JobState): JobSummary[] {
    const replica = this.must(this.replica)
    const out = [...replica.state.jobs.values()]
      .sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1))
      .map((j) => this.summary(j))
    return state === undefined ? out : out.filter((j) => j.state === state)
  }

  async job(id: string): Promise<JobSummary> {
    return this.summary(await this.jobRegister(id))
  }

  /**
   * A job's register. Before answering 404, ask the peers that would hold its replicas: a job
   * accepted elsewhere a moment ago may not have reached this daemon yet.
   */
  private async jobRegister(id: string): Promise<JobRegister> {
    const state = this.must(this.replica).state
    let job = state.jobs.get(id)
    if (job === undefined) {
      const mesh = this.must(this.mesh)
      const ask = this.replicaPeers(id).slice(0, Math.max(this.config.ackReplicas, 2))
      await Promise.allSettled(ask.map((p) => mesh.pullJobs(p, [id], 1000)))
      job = state.jobs.get(id)
    }
    if (job === undefined)
      throw new ShoalError('JOB_NOT_FOUND', `job ${id} is not known to this daemon or its peers`)
    return job
  }

  /** Leaf fragments in order, with who runs or ran them. */
  async fragments(id: string): Promise<FragmentRecord[]> {
    const job = await this.jobRegister(id)
    if (job.finished !== undefined) return [] // compacted: the summary stands for them
    const frags = this.must(this.replica).state.fragmentsOf(id)
    return leafFragments(job.spec, frags).map(([path, reg]) => {
      const v = fragmentView(path, reg, job.cancelled)
      return { ...v, startedAt: iso(v.startedAt), finishedAt: iso(v.finishedAt) }
    })
  }

  /**
   * Cancel a job: a synced write of `cancelled` (it merges by OR, so it reaches daemons that
   * were offline through anti-entropy), announced and pushed like a new job. Every daemon kills
   * the job's running fragments when it learns; none starts again. Cancelling a cancelled job
   * is a no-op; a finished job cannot be cancelled.
   */
  async cancel(id: string): Promise<JobSummary> {
    const job = await this.jobRegister(id)
    const now = this.summary(job)
    if (now.state === 'SUCCEEDED' || now.state === 'FAILED') {
      throw new ShoalError('JOB_FINISHED', `job ${id} already ${now.state}; nothing to cancel`)
    }
    if (!job.cancelled) {
      const entry: Entry = { kind: 'job', id, value: { ...job, cancelled: true } }
      const changed = await this.must(this.replica)
        .applyDurably([entry])
        .catch((err: unknown) => {
          throw refused(err, 'the job was not cancelled')
        })
      this.must(this.mesh).announce(changed)
      await this.replicate(id, changed.length > 0 ? changed : [entry])
      this.log.info({ job: id }, 'job cancelled')
    }
    return this.summary(this.must(this.replica).state.jobs.get(id) ?? job)
  }

  /** Hear of every change to a job (its register or any fragment). Returns an unsubscribe. */
  onJobChange(listener: (jobId: string) => void): () => void {
    return this.must(this.replica).onChange((changed) => {
      const ids = new Set(changed.map((e) => (e.kind === 'job' ? e.id : e.job)))
      for (const id of ids) listener(id)
    })
  }

  /** stdout of the job's succeeded leaves, in fragment order; `complete` when every leaf succeeded. */
  async output(id: string): Promise<{ chunks: string[]; complete: boolean }> {
    const job = await this.jobRegister(id)
    if (job.finished !== undefined) {
      if (job.finished.output === undefined) {
        throw new ShoalError(
          'OUTPUT_GONE',
          `job ${id} was compacted and its output dropped (compactedOutput)`
        )
      }
      return { chunks: job.finished.output, complete: job.finished.state === 'SUCCEEDED' }
    }
    const frags = this.must(this.replica).state.fragmentsOf(id)
    const chunks: string[] = []
    let complete = true
    for (const [, reg] of leafFragments(job.spec, frags)) {
      const claim = reg?.claim
      if (claim?.phase === 'SUCCEEDED') chunks.push(claim.outcome?.output ?? '')
      else complete = false
    }
    return { chunks, complete }
  }

  /** Test-only partition switch (chaos runs); the API exposes it only with `testHooks`. */
  async partition(blocked: string[]): Promise<void> {
    await this.must(this.mesh).setBlocked(blocked)
  }

  peers(): Array<PeerView & { running: number; capacity: number }> {
    return this.must(this.mesh).peers()
  }

  health(): Health {
    const mesh = this.must(this.mesh)
    const failure = this.must(this.replica).failure
    return {
      status: failure === undefined ? 'ok' : 'degraded',
      state: this.life,
      peerId: this.peerIdStr,
      peers: mesh.peers().filter((p) => p.state === 'alive').length,
      connections: mesh.connectionCount(),
      synced: mesh.isSynced,
      incarnation: this.incarnationNo,
      stateDigest: this.must(this.replica).state.stateDigest(),
      storage:
        failure === undefined
          ? { writable: true }
          : { writable: false, failure: failure.failure, message: failure.message },
      containment: this.containment?.kind ?? 'process-group'
    }
  }

  static isJobState(s: string): s is JobState {
    return (JOB_STATES as readonly string[]).includes(s)
  }
}

/** A write refused for want of a working disk, as the API tells it (507 or 503, one line). */
function refused(err: unknown, what: string): unknown {
  if (!(err instanceof ShoalError) || (err.code !== 'STORAGE_FULL' && err.code !== 'STORAGE_FAILED'))
    return err
  return new ShoalError(
    err.code,
    `storage: ${err.message}; ${what} (retry once the disk recovers, or use another daemon)`,
    { cause: err }
  )
}

function countBy<T>(xs: readonly T[], key: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1
  return out
}
