import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Logger } from 'pino'
import { ulid } from 'ulid'
import type { DaemonState, Health, JobsApi, PeerSummary, SchedulesApi, TasksAnswer } from '../core/api.ts'
import { ShoalError } from '../core/errors.ts'
import type { JobMetric } from '../core/metrics.ts'
import { JOB_STATES, type JobState } from '../core/status.ts'
import { ShoalNode } from '../engine/node.ts'
import { loadIdentity } from '../mesh/identity.ts'
import { Libp2pTransport } from '../mesh/libp2p.ts'
import type { PeerView } from '../mesh/membership.ts'
import { DiskBlobStore, type LevelStore, storeErrorOf } from '../store/index.ts'
import { Containment } from '../worker/cgroup.ts'
import { CommandExecutor } from '../worker/command.ts'
import { TaskRouter } from '../worker/router.ts'
import { systemClock } from './clock.ts'
import type { DaemonConfig } from './config.ts'
import { openStateStore, STATE_DIR, startupError } from './datadir.ts'
import { ForecastFeed } from './forecast-feed.ts'
import { Metrics, type TryResult } from './metrics.ts'
import { VERSION } from './version.ts'

export { VERSION }

/**
 * The composition root: opens the data dir (its lock, identity and state store), sets up task
 * containment and the executor, builds the libp2p transport, and runs the engine (ShoalNode)
 * over them; it adds what only a real host has: metrics, health, and the test partition switch.
 */
export class Daemon {
  readonly config: DaemonConfig
  readonly log: Logger
  private node: ShoalNode | undefined
  private transport: Libp2pTransport | undefined
  private store: LevelStore | undefined
  private runner: TaskRouter | undefined
  private feed: ForecastFeed | undefined
  /** The blob store (outputs and logs), for tests that count what is on disk. */
  blobs: DiskBlobStore | undefined
  private metricsImpl: Metrics | undefined
  private containment: Containment | undefined
  /** The drain file writes, in order (see persistDrain). */
  private drainWrites: Promise<void> = Promise.resolve()
  private apiUrl = ''
  /** Closed before the engine was built (a start that failed early). */
  private closedEarly = false
  private peerIdStr = ''

  constructor(config: DaemonConfig, log: Logger) {
    this.config = config
    this.log = log
  }

  get peerId(): string {
    return this.peerIdStr
  }

  get incarnation(): number {
    return this.node?.incarnation ?? 0
  }

  get metrics(): Metrics {
    return this.must(this.metricsImpl)
  }

  /** The job service (submit, cancel, queries), as the HTTP API uses it. */
  get jobs(): JobsApi {
    const node = this.must(this.node)
    if (!node.ready) throw new ShoalError('UNAVAILABLE', 'the daemon is not started')
    return node.jobs
  }

  /** The schedule service, as the HTTP API uses it. */
  get schedules(): SchedulesApi {
    const node = this.must(this.node)
    if (!node.ready) throw new ShoalError('UNAVAILABLE', 'the daemon is not started')
    return node.schedules
  }

  setApiUrl(url: string): void {
    this.apiUrl = url
  }

  multiaddrs(): string[] {
    return this.transport?.multiaddrs() ?? []
  }

  /** Start everything in order; a failed start rolls back what had started. */
  async start(): Promise<void> {
    const cfg = this.config
    const log = this.log
    await mkdir(cfg.dataDir, { recursive: true, mode: 0o700 })
    // The store's lock is the data dir's: take it before touching anything else in the data dir
    // (a second daemon started on a live data dir must leave the first one's work alone).
    const store = await openStateStore(cfg.dataDir, { resetState: cfg.resetState, log })
    this.store = store
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
      const transport = new Libp2pTransport(
        {
          privateKey,
          listen: cfg.listen,
          bootstrap: cfg.bootstrap,
          peerStoreDir: join(cfg.dataDir, 'peers'),
          maxDialPeers: cfg.maxDialPeers,
          isolatedAfterMs: cfg.isolatedAfterMs,
          ...(cfg.swarmKey !== undefined ? { swarmKey: await readFile(cfg.swarmKey) } : {}),
          logger: log.child({ component: 'mesh' })
        },
        this.peerIdStr
      )
      this.transport = transport
      // Outputs and logs too large for a register: content-addressed files under blobs/.
      const blobs = new DiskBlobStore(join(cfg.dataDir, 'blobs'))
      await blobs.open()
      this.blobs = blobs
      const executor = new CommandExecutor(workDir, log.child({ component: 'worker' }), containment, blobs)
      const taskPath = process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin'
      // Module tasks load here: a missing module or export stops the start with a config error.
      const runner = new TaskRouter(executor, cfg.tasks, {
        capacity: cfg.capacity,
        workRoot: workDir,
        taskPath,
        blobs,
        log: log.child({ component: 'worker' })
      })
      await runner.start()
      this.runner = runner
      const node = new ShoalNode(
        cfg,
        { store, blobs, transport, runner, clock: systemClock, logger: log, newId: () => ulid() },
        {
          peerId: this.peerIdStr,
          apiUrl: () => this.apiUrl,
          bootstrapCount: cfg.bootstrap.length,
          version: VERSION,
          taskPath,
          drained: await access(join(cfg.dataDir, DRAINED_FILE)).then(
            () => true,
            () => false
          ),
          onDrain: (on) => this.persistDrain(on),
          loadFailed: (err) => startupError(storeErrorOf(err, join(cfg.dataDir, STATE_DIR), 'open')),
          onTry: (_job, _claim, result) => {
            const outcome: TryResult = result.aborted
              ? 'aborted'
              : result.timedOut
                ? 'timeout'
                : result.exitCode === 0
                  ? 'success'
                  : 'failure'
            this.metrics.tries.inc({ result: outcome })
            this.metrics.tryDuration.observe(result.durationMs / 1000)
          },
          onAccepted: () => this.metrics.jobsAccepted.inc(),
          afterLeave: async () => {
            await executor.settle()
            await runner.close()
          }
        }
      )
      this.node = node
      this.metricsImpl = new Metrics({
        version: VERSION,
        running: () => (node.ready ? node.scheduler.runningCount : 0),
        stalls: () => (node.ready ? node.mesh.membership.stalls : 0),
        overshoot: () => (node.ready ? node.scheduler.maxOvershoot : 0),
        rejected: () => transport.rejected,
        peers: () => countBy(this.peers(), (p) => p.state),
        jobs: () => (node.ready ? node.jobs.listJobs() : []),
        tasks: () => Object.keys(cfg.tasks),
        writable: () => (node.ready ? node.replica.writable : false),
        pools: () => runner.pools(),
        taskMetrics: () => {
          if (!node.ready) return []
          const state = node.replica.state
          const out: Array<{ job: string; metric: JobMetric }> = []
          for (const job of state.metrics.keys()) {
            if (state.jobs.get(job)?.finished !== undefined) continue
            for (const metric of node.metrics.jobMetrics(job).metrics) out.push({ job, metric })
          }
          return out
        },
        metricsDropped: () => (node.ready ? node.metrics.droppedTotal : 0),
        tenants: () => {
          const running = new Map<string, number>(Object.keys(cfg.tenants).map((t) => [t, 0]))
          if (node.ready) {
            const state = node.replica.state
            for (const job of state.jobs.values()) {
              if (job.finished !== undefined) continue
              const n = state.leaves(job.id)?.summary().RUNNING ?? 0
              running.set(job.tenant, (running.get(job.tenant) ?? 0) + n)
            }
          }
          const over = node.ready ? node.scheduler.tenantOvershoot : new Map<string, number>()
          return [...running].map(([tenant, n]) => ({ tenant, running: n, overshoot: over.get(tenant) ?? 0 }))
        }
      })
      node.onStoreHealth((failure) => {
        if (failure !== undefined) this.metrics.storageFailures.inc()
      })
      await node.start()
      this.feed = new ForecastFeed(node, runner)
      this.feed.start()
    } catch (err) {
      // The node closes the store itself once it started; before that, close it here.
      if (this.node === undefined) {
        await this.runner?.close()
        await store.close().catch(() => undefined)
        this.closedEarly = true
      } else await this.stop(0).catch((e: unknown) => log.error({ err: e }, 'rollback failed'))
      throw err
    }
  }

  /** Where this daemon is in its life. */
  get state(): DaemonState {
    return this.node?.state ?? (this.closedEarly ? 'stopped' : 'starting')
  }

  /** Graceful stop: leave (stop claiming, let runs finish up to graceMs, hand back the rest), then close. */
  async stop(graceMs = this.config.shutdownGraceMs): Promise<void> {
    this.feed?.stop()
    if (this.node === undefined) {
      await this.store?.close()
      return
    }
    await this.node.stop(graceMs)
  }

  /** Leave the mesh without shutting down (see ShoalNode.leave). Idempotent. */
  leave(graceMs = this.config.shutdownGraceMs): Promise<void> {
    if (this.node === undefined)
      return Promise.reject(new ShoalError('UNAVAILABLE', 'the daemon is not started'))
    return this.node.leave(graceMs)
  }

  /** Shut down (see ShoalNode.close). Idempotent. */
  close(): Promise<void> {
    return this.node === undefined ? (this.store?.close() ?? Promise.resolve()) : this.node.close()
  }

  private must<T>(x: T | undefined): T {
    if (x === undefined) throw new ShoalError('UNAVAILABLE', 'the daemon is not started')
    return x
  }

  /** Test-only partition switch (chaos runs); the API exposes it only with `testHooks`. */
  async partition(blocked: string[]): Promise<void> {
    await this.must(this.transport).setBlocked(blocked)
  }

  peers(): PeerView[] {
    return this.must(this.node).mesh.peers()
  }

  /** Every daemon this one knows, as the API shows them. */
  peerSummaries(): PeerSummary[] {
    return this.peers().map(peerSummary)
  }

  /**
   * Drain or undrain a daemon: this one (`self` or its own id) at once; another by a drain order
   * gossiped to it by peer id (signed by this daemon, obeyed only by the one it names; no
   * credential leaves this daemon), confirmed by its own heartbeats. Either way the drained
   * daemon keeps the state across restarts (a file in its data dir). Answers the daemon as this
   * one sees it after the change.
   */
  async drainPeer(peerId: string, on: boolean): Promise<PeerSummary> {
    const node = this.must(this.node)
    const what = on ? 'drain' : 'undrain'
    if (peerId === 'self' || peerId === this.peerIdStr) {
      node.drain(on)
      await this.drainWrites
      return this.peerSummaries().find((p) => p.self) as PeerSummary
    }
    const named = () => this.peers().find((p) => p.peerId === peerId)
    const peer = named()
    if (peer === undefined) throw new ShoalError('PEER_NOT_FOUND', `peerId: no daemon ${peerId} in this mesh`)
    if (peer.state !== 'alive' || peer.leaving)
      throw new ShoalError(
        'PEER_UNREACHABLE',
        `peerId: ${peer.name} is ${peer.leaving ? 'leaving' : peer.state}; ${what} it once it is back`
      )
    // Sent again every second (gossip may drop one) until its heartbeat says it obeyed.
    const deadline = Date.now() + DRAIN_CONFIRM_MS
    for (let next = 0; Date.now() < deadline; ) {
      if (Date.now() >= next) {
        await node.mesh.sendDrain(peerId, on)
        next = Date.now() + 1000
      }
      const now = named()
      if (now !== undefined && (now.drained === true) === on && now.state === 'alive') return peerSummary(now)
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new ShoalError(
      'PEER_UNREACHABLE',
      `peerId: asked ${peer.name} to ${what}; its heartbeats did not say so within ${DRAIN_CONFIRM_MS / 1000} s`
    )
  }

  /** Keep this daemon's drain across restarts: the file is written or removed in order. */
  private persistDrain(on: boolean): void {
    const marker = join(this.config.dataDir, DRAINED_FILE)
    this.drainWrites = this.drainWrites
      .then(() =>
        on ? writeFile(marker, `${new Date().toISOString()}\n`, { mode: 0o600 }) : rm(marker, { force: true })
      )
      .catch((err: unknown) =>
        this.log.warn({ err: (err as Error).message }, 'cannot record the drain in the data dir')
      )
  }

  /**
   * The tasks each live daemon offers, from the names their heartbeats carry (this daemon's
   * membership view, itself included); peers leaving or not alive offer nothing.
   */
  tasks(): TasksAnswer {
    const byTask = new Map<string, string[]>()
    const adHoc: string[] = []
    for (const p of this.peers()) {
      if (p.state !== 'alive' || p.leaving) continue
      for (const t of p.tasks ?? []) byTask.set(t, [...(byTask.get(t) ?? []), p.peerId])
      if (p.adHoc === true) adHoc.push(p.peerId)
    }
    return {
      tasks: [...byTask]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([name, peers]) => ({ name, peers: peers.sort() })),
      adHoc: adHoc.sort()
    }
  }

  health(): Health {
    const node = this.must(this.node)
    const mesh = node.mesh
    const failure = node.replica.failure
    return {
      status: failure === undefined ? 'ok' : 'degraded',
      version: VERSION,
      state: node.state,
      peerId: this.peerIdStr,
      peers: mesh.peers().filter((p) => p.state === 'alive').length,
      connections: this.transport?.connectionCount() ?? 0,
      synced: mesh.isSynced,
      incarnation: node.incarnation,
      stateDigest: node.replica.state.stateDigest(),
      storage:
        failure === undefined
          ? { writable: true }
          : { writable: false, failure: failure.failure, message: failure.message },
      containment: this.containment?.kind ?? 'process-group',
      ...isolation(this.transport?.isolatedReason)
    }
  }

  static isJobState(s: string): s is JobState {
    return (JOB_STATES as readonly string[]).includes(s)
  }
}

function isolation(reason: string | undefined): Pick<Health, 'isolated' | 'isolatedReason'> {
  return reason === undefined ? { isolated: false } : { isolated: true, isolatedReason: reason }
}

function countBy<T>(xs: readonly T[], key: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1
  return out
}

/** In the data dir while an operator has the daemon drained (so a restart keeps it drained). */
const DRAINED_FILE = 'drained'
/** How long a drain of another daemon waits for its heartbeats to confirm it. */
const DRAIN_CONFIRM_MS = 10_000

/** A daemon as the API shows it (GET /v1/peers). */
function peerSummary(p: PeerView): PeerSummary {
  return {
    peerId: p.peerId,
    name: p.name,
    multiaddrs: p.multiaddrs,
    api: p.api,
    state: p.state,
    running: p.running,
    capacity: p.capacity,
    incarnation: p.incarnation,
    synced: p.synced,
    self: p.self,
    draining: p.drained === true,
    ...(p.version !== undefined ? { version: p.version } : {})
  }
}
