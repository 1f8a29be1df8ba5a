import type { DaemonState } from '../core/api.ts'
import { type EngineConfig, PULL_TIMEOUT_MS, syncGraceMs } from '../core/config.ts'
import { ShoalError } from '../core/errors.ts'
import { canRun } from '../core/hrw.ts'
import type { Transition } from '../core/membership.ts'
import type { BlobStore, Cancel, Clock, Log, TaskResult, TaskRunner } from '../core/ports.ts'
import type { Claim, JobRegister } from '../core/register.ts'
import type { StateSeams } from '../core/state.ts'
import type { TaskConfig } from '../core/task.ts'
import { Mesh } from '../mesh/mesh.ts'
import type { Transport } from '../mesh/transport.ts'
import { Scheduler, type SchedulerSeams } from '../scheduler/scheduler.ts'
import { logFailure, type StoreError } from '../store/errors.ts'
import { type ChangeListener, Replica } from '../store/replica.ts'
import type { StateStore } from '../store/types.ts'
import { JobService } from './jobs.ts'
import { MetricsKeeper } from './metrics.ts'
import { OutputKeeper, type OutputSeams } from './outputs.ts'
import { type ScheduleSeams, ScheduleService } from './schedules.ts'

/** What a node runs on: the daemon passes LevelDB, libp2p, child processes and the system clock. */
export interface NodePorts {
  store: StateStore
  /** Where output blobs live (on disk in the daemon). */
  blobs: BlobStore
  transport: Transport
  runner: TaskRunner
  clock: Clock
  logger: Log
  /** A fresh job id. */
  newId: () => string
}

/** Deliberate bugs, planted only by the simulator's tests to prove its checks catch them. */
export interface NodeSeams {
  /** Restart without bumping the incarnation. */
  reuseIncarnation?: boolean
  state?: StateSeams
  scheduler?: SchedulerSeams
  outputs?: OutputSeams
  schedules?: ScheduleSeams
}

export interface NodeOptions {
  peerId: string
  /** The HTTP API URL this daemon announces. */
  apiUrl: () => string
  /** How many bootstrap addresses the daemon was given (a daemon with none may be the first). */
  bootstrapCount: number
  /** The Shoal version it announces in heartbeats. */
  version?: string
  /** PATH given to tasks. */
  taskPath: string
  /** Longest anti-entropy pull (default 30 s). */
  pullTimeoutMs?: number
  /** What a failure to load the stored state becomes (the daemon's start-up error). */
  loadFailed?: (err: unknown) => unknown
  /** Called after every finished try (metrics). */
  onTry?: (job: JobRegister, claim: Claim, result: TaskResult) => void
  onAccepted?: () => void
  onTransition?: (t: Transition) => void
  /** Hears every change of the replicated state, from the first (the simulator's checks). */
  onChange?: ChangeListener
  /** Start drained (an operator drained it before a restart): see ShoalNode.drain. */
  drained?: boolean
  /** Called on every drain or undrain, here or by an order from another daemon (to keep it across restarts). */
  onDrain?: (on: boolean) => void
  /** Runs after the scheduler stopped on a leave (the executor tidies its work dirs). */
  afterLeave?: () => Promise<void>
  seams?: NodeSeams
}

/**
 * One Shoal daemon's protocol, whole: the replica over its store, the mesh protocol over its
 * transport, the scheduler over its task runner, and the job service; with one life state
 * (starting, alive, leaving, left, stopped), a leave and a shutdown that are separate and
 * idempotent. The daemon (src/daemon) builds it over real ports; the simulator (src/sim) over
 * virtual ones, so every decision the simulator checks is the one the daemon makes.
 */
export class ShoalNode {
  readonly config: EngineConfig
  private readonly ports: NodePorts
  private readonly o: NodeOptions
  private readonly log: Log
  private life: DaemonState = 'starting'
  private incarnationNo = 0
  private replicaImpl: Replica | undefined
  private meshImpl: Mesh | undefined
  private schedulerImpl: Scheduler | undefined
  private jobsImpl: JobService | undefined
  private schedulesImpl: ScheduleService | undefined
  private metricsImpl: MetricsKeeper | undefined
  private outputsImpl: OutputKeeper | undefined
  private leaving: Promise<void> | undefined
  private closing: Promise<void> | undefined
  private cancelHousekeeping: Cancel | undefined
  private lastSyncNoted = Number.NEGATIVE_INFINITY
  private drained = false
  private readonly healthListeners = new Set<(failure: StoreError | undefined) => void>()

  constructor(config: EngineConfig, ports: NodePorts, options: NodeOptions) {
    this.config = config
    this.ports = ports
    this.o = options
    this.log = ports.logger
  }

  get state(): DaemonState {
    return this.life
  }

  /** Drained by an operator: a member that claims nothing (see drain). */
  get isDrained(): boolean {
    return this.drained
  }

  /**
   * Drain (on) or undrain (off) this daemon: it stops claiming, hands back at once what it
   * claimed and has not started, lets what runs finish, and stays a member (it keeps its state,
   * answers the API and syncs). Its heartbeats say so, so peers rank its fragments elsewhere.
   */
  drain(on: boolean, from?: string): void {
    if (from === undefined) this.meshImpl?.drainedHere()
    if (this.drained === on) return
    this.drained = on
    this.o.onDrain?.(on)
    this.log.info(
      { drained: on, ...(from !== undefined ? { by: from } : {}) },
      on ? 'drained: claiming nothing' : 'undrained: claiming again'
    )
    if (on && this.meshImpl !== undefined) {
      // Tasks no other claiming daemon runs: their jobs wait until this one is undrained.
      const others = this.meshImpl.claimers().filter((p) => p.id !== this.o.peerId)
      const alone = Object.keys(this.config.tasks).filter((task) => !others.some((p) => canRun(p, { task })))
      if (alone.length > 0)
        this.log.warn(
          { tasks: alone },
          'drained: no other daemon runs these tasks; their jobs wait until undrain'
        )
    }
    if (this.schedulerImpl !== undefined) this.schedulerImpl.drain(on)
    if (this.life === 'alive') this.meshImpl?.heartbeatNow()
  }

  get peerId(): string {
    return this.o.peerId
  }

  get incarnation(): number {
    return this.incarnationNo
  }

  get replica(): Replica {
    return this.must(this.replicaImpl)
  }

  get mesh(): Mesh {
    return this.must(this.meshImpl)
  }

  get scheduler(): Scheduler {
    return this.must(this.schedulerImpl)
  }

  get jobs(): JobService {
    return this.must(this.jobsImpl)
  }

  get metrics(): MetricsKeeper {
    return this.must(this.metricsImpl)
  }

  get schedules(): ScheduleService {
    return this.must(this.schedulesImpl)
  }

  get outputs(): OutputKeeper {
    return this.must(this.outputsImpl)
  }

  /** Started far enough to answer queries (the replica is loaded, the mesh built). */
  get ready(): boolean {
    return this.jobsImpl !== undefined
  }

  /** Hear when the state store goes out of service (with why) or comes back (undefined). */
  onStoreHealth(listener: (failure: StoreError | undefined) => void): void {
    this.healthListeners.add(listener)
  }

  /**
   * Start: bump the synced incarnation, apply the tombstone rule, load the state, then run the
   * mesh and the claim loop. A failed start leaves everything it started stopped.
   */
  async start(): Promise<void> {
    this.drained = this.o.drained === true
    const cfg = this.config
    const { store, clock, transport, runner } = this.ports
    const log = this.log
    try {
      // Every start bumps a synced incarnation: leases of the previous life lapse at our first
      // heartbeat. In ms, so even a restart within the same second as a lost life gets a higher one.
      const stored = (await store.getMeta<number>('incarnation')) ?? 0
      this.incarnationNo =
        this.o.seams?.reuseIncarnation === true && stored > 0 ? stored : Math.max(stored + 1, clock.wallNow())
      await store.putMeta('incarnation', this.incarnationNo, { sync: true })

      // Tombstone rule: a daemon out of sync for longer than tombstones live may hold fragments
      // of jobs whose summaries were since dropped; it wipes its replicated state and resyncs.
      const lastSync = await store.getMeta<number>('lastSyncAt')
      if (lastSync !== undefined && clock.wallNow() - lastSync > (cfg.tombstoneDays - 1) * 86_400_000) {
        log.warn(
          { lastSync: new Date(lastSync).toISOString() },
          'last sync older than the tombstones: wiping state'
        )
        await store.clearState()
      }
      const replica = new Replica(store, {
        clock,
        ...(this.o.seams?.state ? { seams: this.o.seams.state } : {})
      })
      this.replicaImpl = replica
      if (this.o.onChange !== undefined) replica.onChange(this.o.onChange)
      replica.onHealth((failure) => this.storeHealth(failure))
      const loaded = await replica.load().catch((err: unknown) => {
        throw this.o.loadFailed?.(err) ?? err
      })
      log.info({ registers: loaded, jobs: replica.state.jobs.size }, 'state loaded')

      const mesh = new Mesh(
        {
          name: cfg.name,
          incarnation: this.incarnationNo,
          apiUrl: this.o.apiUrl,
          heartbeatMs: cfg.heartbeatMs,
          suspectMs: cfg.suspectMs,
          syncIntervalMs: cfg.syncIntervalMs,
          syncGraceMs: syncGraceMs(cfg),
          pullTimeoutMs: this.o.pullTimeoutMs ?? PULL_TIMEOUT_MS,
          // A daemon that held state had peers: it waits to hear from them before claiming.
          firstStart: loaded === 0,
          bootstrapCount: this.o.bootstrapCount,
          deltaBatchMs: cfg.deltaBatchMs,
          tasks: Object.keys(cfg.tasks),
          adHoc: cfg.allowAdHocCommands,
          ...(this.o.version !== undefined ? { version: this.o.version } : {}),
          logger: log.child({ component: 'mesh' }),
          ...(this.o.onTransition ? { onTransition: this.o.onTransition } : {})
        },
        {
          replica,
          transport,
          clock,
          // The keeper is built next (it needs the mesh); nothing arrives before mesh.start().
          blobs: {
            serveBlob: (sha256) => this.outputs.serve(sha256),
            receiveBlob: (blob, source, job) => this.outputs.receive(blob, source, job),
            heldBlobs: (sha256s) => this.outputs.held(sha256s)
          },
          load: () => ({
            capacity: cfg.capacity,
            running: this.schedulerImpl?.runningCount ?? 0,
            // Claims only while alive (others stop ranking it as soon as it leaves) and able to
            // write its state; announced as left once everything is recorded or handed back.
            claiming: this.life === 'alive' && replica.writable && !this.drained,
            drained: this.drained,
            leaving: this.life === 'left' || this.life === 'stopped'
          })
        },
        this.o.peerId
      )
      this.meshImpl = mesh
      const outputs = new OutputKeeper(
        {
          replicas: cfg.outputReplicas,
          checkMs: cfg.blobCheckMs,
          graceMs: cfg.blobGraceMs,
          idleMs: this.o.pullTimeoutMs ?? PULL_TIMEOUT_MS,
          logger: log.child({ component: 'outputs' }),
          ...(this.o.seams?.outputs ? { seams: this.o.seams.outputs } : {})
        },
        {
          peerId: this.o.peerId,
          blobs: this.ports.blobs,
          transport,
          replica,
          mesh,
          clock,
          serving: () => this.life === 'alive'
        }
      )
      this.outputsImpl = outputs
      const metrics = new MetricsKeeper(cfg.metricsFlushMs, {
        replica,
        mesh,
        clock,
        logger: log.child({ component: 'metrics' }),
        incarnation: this.incarnationNo
      })
      this.metricsImpl = metrics
      const scheduler = new Scheduler(
        {
          capacity: cfg.capacity,
          stealDelayMs: cfg.stealDelayMs,
          tickMs: cfg.tickMs,
          hostLostLimit: cfg.hostLostLimit,
          killGraceMs: cfg.killGraceMs,
          retryBackoffMs: cfg.retryBackoffMs,
          retryBackoffMaxMs: cfg.retryBackoffMaxMs,
          maxOutputBytes: cfg.maxOutputBytes,
          inlineOutputBytes: cfg.inlineOutputBytes,
          maxProcesses: cfg.maxProcesses,
          taskPath: this.o.taskPath,
          tenants: cfg.tenants,
          logger: log.child({ component: 'scheduler' }),
          ...(this.o.seams?.scheduler ? { seams: this.o.seams.scheduler } : {})
        },
        {
          replica,
          mesh: {
            peerId: this.o.peerId,
            get isSynced() {
              return mesh.isSynced
            },
            suspectedBy: () => mesh.membership.suspectedBy(),
            claimers: () => mesh.claimers(),
            leaseLive: (holder, inc) => mesh.membership.leaseLive(holder, inc),
            superseded: (holder, inc) => mesh.membership.superseded(holder, inc),
            suspectWindow: (holder) => mesh.membership.suspectWindow(holder),
            announce: (entries) => mesh.announce(entries)
          },
          runner,
          outputs,
          metrics,
          tasks: (spec) => this.taskFor(spec),
          incarnation: this.incarnationNo,
          clock,
          ...(this.o.onTry ? { onTry: this.o.onTry } : {})
        }
      )
      this.schedulerImpl = scheduler
      this.jobsImpl = new JobService(cfg, {
        replica,
        mesh,
        clock,
        logger: log,
        newId: this.ports.newId,
        outputs,
        metrics,
        ...(this.o.onAccepted ? { onAccepted: this.o.onAccepted } : {})
      })
      const schedules = new ScheduleService(
        { ...cfg, ...(this.o.seams?.schedules ? { seams: this.o.seams.schedules } : {}) },
        { replica, mesh, clock, logger: log, jobs: this.jobsImpl }
      )
      this.schedulesImpl = schedules
      mesh.on('membership', () => scheduler.wake())
      mesh.on('drain', (on, from) => this.drain(on, from))
      mesh.on('pulled', () => this.noteSync())
      await mesh.start()
      scheduler.start()
      if (this.drained) scheduler.drain(true)
      outputs.start()
      schedules.start()
      this.life = 'alive'
      this.housekeeping()
    } catch (err) {
      await this.stop(0).catch((e: unknown) => log.error({ err: e }, 'rollback failed'))
      throw err
    }
  }

  /** The task a job runs here, or undefined when this daemon may not run it. */
  private taskFor(spec: { command?: string[] | undefined; task: string }): TaskConfig | undefined {
    // An ad-hoc command runs only where the operator allowed ad-hoc commands.
    if (spec.command !== undefined)
      return this.config.allowAdHocCommands ? { command: spec.command } : undefined
    return this.config.tasks[spec.task]
  }

  /** Compaction, every half of retainFinishedMs (at least 0.1 s, at most a minute). */
  private housekeeping(): void {
    const every = Math.max(100, Math.min(60_000, Math.floor(this.config.retainFinishedMs / 2)))
    this.cancelHousekeeping = this.ports.clock.after(every, () => {
      this.jobs
        .compact()
        .catch((err: unknown) => logFailure(this.log, err, 'compaction failed'))
        .finally(() => {
          if (this.life === 'alive') this.housekeeping()
        })
    })
  }

  /**
   * The state store went out of service (a full disk, a failed write) or came back. While it
   * is out, this daemon claims nothing (others stop ranking it), refuses submits and cancels,
   * and keeps serving reads; the replica brings the store back by itself.
   */
  private storeHealth(failure: StoreError | undefined): void {
    if (failure !== undefined) {
      this.log.error(
        { failure: failure.failure, location: failure.location, err: failure.message },
        'state store out of service: refusing writes, claiming nothing, retrying'
      )
    } else {
      this.log.info('state store back in service; the whole state was written again')
      this.schedulerImpl?.wake()
    }
    this.meshImpl?.heartbeatNow()
    for (const l of this.healthListeners) l(failure)
  }

  /** Record (at most once a minute) that this daemon is in sync, for the tombstone rule. */
  private noteSync(): void {
    const now = this.ports.clock.wallNow()
    if (now - this.lastSyncNoted < 60_000) return
    this.lastSyncNoted = now
    this.ports.store
      .putMeta('lastSyncAt', now)
      .catch((err: unknown) => this.log.warn({ err }, 'cannot note sync'))
  }

  /** Graceful stop: leave (runs finish up to graceMs, the rest is handed back), then close. */
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

  private async doLeave(graceMs: number): Promise<void> {
    this.cancelHousekeeping?.()
    if (this.life === 'starting' || this.life === 'alive') this.life = 'leaving'
    this.meshImpl?.heartbeatNow()
    try {
      await this.schedulerImpl?.stop(graceMs)
      await this.pushHandedBack()
      await this.o.afterLeave?.()
    } finally {
      // Left: everything is recorded or handed back; others take over without waiting.
      if (this.life === 'leaving') this.life = 'left'
      this.meshImpl?.heartbeatNow()
    }
  }

  /**
   * Last words that must arrive: the fragments this leave handed back, pushed to two live peers
   * and acknowledged (bounded by ackTimeoutMs), so others take them over at once rather than
   * after suspicion when the gossip of a daemon about to hang up is lost.
   */
  private async pushHandedBack(): Promise<void> {
    const entries = this.schedulerImpl?.takeHandedBack() ?? []
    const mesh = this.meshImpl
    if (entries.length === 0 || mesh === undefined) return
    const peers = mesh
      .peers()
      .filter((p) => !p.self && p.state === 'alive' && !p.leaving)
      .map((p) => p.peerId)
      .slice(0, 2)
    const results = await Promise.allSettled(
      peers.map((p) => mesh.push(p, entries, this.config.ackTimeoutMs))
    )
    const acked = results.filter((r) => r.status === 'fulfilled').length
    this.log.info(
      { fragments: entries.length, acked, peers: peers.length },
      'handed back fragments on leaving'
    )
  }

  private async doClose(): Promise<void> {
    const errors: unknown[] = []
    const step = async (what: string, fn: () => Promise<void> | undefined): Promise<void> => {
      try {
        await fn()
      } catch (err) {
        errors.push(err)
        logFailure(this.log, err, 'stop step failed', { step: what })
      }
    }
    this.schedulesImpl?.stop()
    await step('leave', () => this.leave(0))
    this.outputsImpl?.stop()
    this.metricsImpl?.stop()
    await step('replica', () => this.replicaImpl?.flush())
    this.replicaImpl?.close()
    await step('mesh', () => this.meshImpl?.stop())
    await step('store', () => this.ports.store.close())
    this.life = 'stopped'
    if (errors.length > 0) throw new AggregateError(errors, 'daemon stop had errors')
  }

  private must<T>(x: T | undefined): T {
    if (x === undefined) throw new ShoalError('UNAVAILABLE', 'the daemon is not started')
    return x
  }
}
