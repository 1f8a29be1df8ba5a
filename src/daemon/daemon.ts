import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import { ulid } from 'ulid'
import { ShoalError } from '../core/errors.ts'
import type { JobRegister } from '../core/register.ts'
import { idempotentJobId, type JobSpecInput, resolveSpec, specHashOf } from '../core/spec.ts'
import {
  type FragmentView,
  fragmentView,
  JOB_STATES,
  type JobState,
  type JobView,
  jobView,
  leafFragments
} from '../core/status.ts'
import { loadIdentity } from '../mesh/identity.ts'
import type { PeerView } from '../mesh/membership.ts'
import { Mesh } from '../mesh/mesh.ts'
import { Scheduler } from '../scheduler/scheduler.ts'
import { LevelStore } from '../store/level.ts'
import { Replica } from '../store/replica.ts'
import { CommandExecutor } from '../worker/command.ts'
import type { DaemonConfig } from './config.ts'
import { Metrics } from './metrics.ts'

export const VERSION = '0.1.0'

/** A job as the API shows it (times in ISO 8601 UTC). */
export interface JobSummary {
  id: string
  state: JobState
  task: string
  name?: string
  labels?: Record<string, string>
  fragments: number
  items: number
  fragmentSize: number
  priority: number
  statusSummary: JobView['statusSummary']
  createdAt: string
  startedAt: string | null
  finishedAt: string | null
  acceptedBy: string
  conflicts?: string[]
}

export interface SubmitResult {
  job: JobSummary
  /** Copies known to hold the job when it was acknowledged. */
  replicas: number
  /** True when an idempotent submission found its job already there. */
  existing: boolean
}

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
  private metricsImpl: Metrics | undefined
  private leaving = false
  private apiUrl = ''
  private peerIdStr = ''
  private incarnationNo = 0
  private stopping: Promise<void> | undefined

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
    await mkdir(cfg.dataDir, { recursive: true, mode: 0o700 })
    const workDir = join(cfg.dataDir, 'work')
    await rm(workDir, { recursive: true, force: true })
    await mkdir(workDir, { recursive: true })
    const privateKey = await loadIdentity(cfg.dataDir)
    this.peerIdStr = peerIdFromPrivateKey(privateKey).toString()
    const log = this.log

    this.store = new LevelStore(join(cfg.dataDir, 'state'))
    try {
      await this.store.open()
    } catch (err) {
      throw new Error(`cannot open the state store in ${cfg.dataDir} (is another daemon using it?)`, {
        cause: err
      })
    }
    try {
      // Every start bumps a synced incarnation: leases of the previous life lapse at our first heartbeat.
      const stored = (await this.store.getMeta<number>('incarnation')) ?? 0
      this.incarnationNo = Math.max(stored + 1, Math.floor(Date.now() / 1000))
      await this.store.putMeta('incarnation', this.incarnationNo, { sync: true })

      const replica = new Replica(this.store)
      this.replica = replica
      const loaded = await replica.load()
      log.info({ registers: loaded, jobs: replica.state.jobs.size }, 'state loaded')

      this.metricsImpl = new Metrics({
        running: () => this.scheduler?.runningCount ?? 0,
        peers: () => countBy(this.peers(), (p) => p.state),
        jobs: () => countBy(this.listJobs(), (j) => j.state)
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
          maxDialPeers: cfg.maxDialPeers,
          deltaBatchMs: cfg.deltaBatchMs,
          logger: log.child({ component: 'mesh' })
        },
        {
          replica,
          load: () => ({
            capacity: cfg.capacity,
            running: this.scheduler?.runningCount ?? 0,
            leaving: this.leaving
          })
        },
        this.peerIdStr
      )
      this.mesh = mesh
      const executor = new CommandExecutor(workDir, log.child({ component: 'worker' }))
      const scheduler = new Scheduler(
        {
          capacity: cfg.capacity,
          stealDelayMs: cfg.stealDelayMs,
          tickMs: cfg.tickMs,
          hostLostLimit: cfg.hostLostLimit,
          killGraceMs: cfg.killGraceMs,
          maxOutputBytes: cfg.maxOutputBytes,
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
            claimers: () => mesh.claimers().map((p) => ({ id: p.peerId, capacity: p.capacity })),
            leaseLive: (holder, inc) => mesh.membership.leaseLive(holder, inc),
            announce: (entries) => mesh.announce(entries)
          },
          executor,
          tasks: (name) => cfg.tasks[name],
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
      await mesh.start()
      scheduler.start()
    } catch (err) {
      await this.stop(0).catch((e: unknown) => log.error({ err: e }, 'rollback failed'))
      throw err
    }
  }

  /** Graceful stop: stop claiming, let runs finish up to graceMs, hand back the rest, leave, flush. */
  stop(graceMs = this.config.shutdownGraceMs): Promise<void> {
    this.stopping ??= this.doStop(graceMs)
    return this.stopping
  }

  private async doStop(graceMs: number): Promise<void> {
    this.leaving = true
    const errors: unknown[] = []
    const step = async (what: string, fn: () => Promise<void> | undefined): Promise<void> => {
      try {
        await fn()
      } catch (err) {
        errors.push(err)
        this.log.error({ err, step: what }, 'stop step failed')
      }
    }
    await step('scheduler', () => this.scheduler?.stop(graceMs))
    await step('replica', () => this.replica?.flush())
    await step('mesh', () => this.mesh?.stop())
    await step('store', () => this.store?.close())
    if (errors.length > 0) throw new AggregateError(errors, 'daemon stop had errors')
  }

  // ---- queries and commands (the API calls these) ----

  private must<T>(x: T | undefined): T {
    if (x === undefined) throw new ShoalError('UNAVAILABLE', 'the daemon is not started')
    return x
  }

  /** Accept a job: validate against this daemon's tasks, resolve, store (synced), announce. */
  async submit(input: JobSpecInput, tenant = 'default'): Promise<SubmitResult> {
    const replica = this.must(this.replica)
    const cfg = this.config
    const task = cfg.tasks[input.task]
    if (task === undefined) {
      throw new ShoalError(
        'TASK_NOT_ALLOWED',
        `task: "${input.task}" is not a task of this daemon (known: ${Object.keys(cfg.tasks).sort().join(', ')})`
      )
    }
    const spec = resolveSpec(input, { timeoutSeconds: task.timeoutSeconds, fragmentSize: task.fragmentSize })
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
      return { job: this.summary(existing), replicas: 1, existing: true }
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
    const changed = await replica.apply([{ kind: 'job', id, value: job }], 'local', { sync: true })
    this.must(this.mesh).announce(changed)
    this.metrics.jobsAccepted.inc()
    this.log.info({ job: id, task: spec.task, fragments: spec.fragmentCount }, 'job accepted')
    return { job: this.summary(replica.state.jobs.get(id) ?? job), replicas: 1, existing: false }
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

  job(id: string): JobSummary {
    return this.summary(this.jobRegister(id))
  }

  private jobRegister(id: string): JobRegister {
    const job = this.must(this.replica).state.jobs.get(id)
    if (job === undefined) throw new ShoalError('JOB_NOT_FOUND', `job ${id} is not known to this daemon`)
    return job
  }

  /** Leaf fragments in order, with who runs or ran them. */
  fragments(
    id: string
  ): Array<
    Omit<FragmentView, 'startedAt' | 'finishedAt'> & { startedAt: string | null; finishedAt: string | null }
  > {
    const job = this.jobRegister(id)
    const frags = this.must(this.replica).state.fragmentsOf(id)
    return leafFragments(job.spec, frags).map(([path, reg]) => {
      const v = fragmentView(path, reg, job.cancelled)
      return { ...v, startedAt: iso(v.startedAt), finishedAt: iso(v.finishedAt) }
    })
  }

  /** stdout of the job's succeeded leaves, in fragment order; `complete` when every leaf succeeded. */
  output(id: string): { chunks: string[]; complete: boolean } {
    const job = this.jobRegister(id)
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

  peers(): Array<PeerView & { running: number; capacity: number }> {
    return this.must(this.mesh).peers()
  }

  health(): {
    status: 'ok'
    peerId: string
    peers: number
    synced: boolean
    incarnation: number
    stateDigest: string
  } {
    const mesh = this.must(this.mesh)
    return {
      status: 'ok',
      peerId: this.peerIdStr,
      peers: mesh.peers().filter((p) => p.state === 'alive').length,
      synced: mesh.isSynced,
      incarnation: this.incarnationNo,
      stateDigest: this.must(this.replica).state.stateDigest()
    }
  }

  static isJobState(s: string): s is JobState {
    return (JOB_STATES as readonly string[]).includes(s)
  }
}

function countBy<T>(xs: readonly T[], key: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1
  return out
}
