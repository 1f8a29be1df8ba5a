import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import { Piscina } from 'piscina'
import { ShoalError } from '../core/errors.ts'
import type { DemandForecast } from '../core/forecast.ts'
import type { BlobStore, TaskResult, TaskRun } from '../core/ports.ts'
import type { TaskConfig } from '../core/task.ts'
import { MetricsIntake } from './metrics-intake.ts'
import type { ModuleAnswer, ModuleContext, ModuleRequest } from './module-thread.ts'
import { PoolAccount, type PoolStats, WaitQueue } from './pool.ts'
import { emptyResult, notStarted, outputResult } from './result.ts'

/** A module task's heap limit per worker thread when the task sets none, MB. */
export const DEFAULT_MODULE_MEMORY_MB = 256
/** Longest wait for a module task's module to load at start. */
const LOAD_MS = 30_000
/** Idle threads beyond the warm target retire after this long. */
const IDLE_MS = 10_000
const STDERR_TAIL = 8 * 1024

interface Pool {
  account: PoolAccount
  piscina: Piscina
  /** Fragments on threads now, at most `limit` (the pool's most threads). */
  active: number
  limit: number
  /** Fragments waiting for a thread: the lifespan of one starts when it gets one. */
  waiting: WaitQueue<void>
}

/**
 * Runs module tasks: a function `(items, ctx) => output` exported by a JavaScript or TypeScript
 * module, in a pool of worker threads per task (piscina). The contract is a command's: items in,
 * output (inline or, when large, a blob) and an exit code and stderr out. A function that throws
 * exits 1 with its error as stderr; a thread past the fragment's lifespan, cancelled, over its
 * heap limit (`maxMemoryMb`) or calling process.exit is ended and replaced, and the daemon goes
 * on. Each pool keeps warm threads between the task's `minWarm` and `maxWarm`, as many as the
 * forecast of its demand asks (DemandForecast).
 */
export class ModuleRunner {
  private readonly pools = new Map<string, Pool>()
  private readonly blobs: BlobStore | undefined
  private readonly log: Logger
  private warmTimer: NodeJS.Timeout | undefined

  constructor(
    tasks: Record<string, TaskConfig>,
    options: { capacity: number; blobs?: BlobStore; log: Logger }
  ) {
    this.blobs = options.blobs
    this.log = options.log
    for (const [name, task] of Object.entries(tasks)) {
      if (task.module === undefined) continue
      const account = new PoolAccount(name, task, options.capacity)
      const limit = Math.max(account.max, options.capacity)
      this.pools.set(name, {
        account,
        active: 0,
        limit,
        waiting: new WaitQueue(),
        piscina: new Piscina({
          // Beside this file: .ts in the sources, .js in the compiled build.
          filename: new URL(`./module-thread${extname(fileURLToPath(import.meta.url))}`, import.meta.url)
            .href,
          workerData: { module: task.module, export: task.export ?? 'default' },
          // maxWarm bounds the threads kept warm ahead of demand (see warm), not how many run:
          // up to `capacity` threads run fragments. A short task's fragments wait for them here,
          // as many per slot as run in about 50 ms (depth), so a thread never waits for the
          // claim loop; a long task's never wait (depth 1). A fragment's lifespan starts when it
          // is handed to a thread, not while it waits.
          minThreads: account.min,
          maxThreads: limit,
          idleTimeout: IDLE_MS,
          concurrentTasksPerWorker: 1,
          resourceLimits: { maxOldGenerationSizeMb: task.maxMemoryMb ?? DEFAULT_MODULE_MEMORY_MB }
        })
      })
    }
  }

  /** Does this runner take the task? */
  takes(task: TaskConfig): boolean {
    return task.module !== undefined
  }

  /**
   * Load every module task's module once, so a missing module or export is a config error at
   * start (naming the task), not a failure of every fragment; then keep the pools warm.
   */
  async start(): Promise<void> {
    for (const pool of this.pools.values()) {
      try {
        let timer: NodeJS.Timeout | undefined
        await Promise.race([
          pool.piscina.run({ warm: true } satisfies ModuleRequest),
          new Promise((_, reject) => {
            timer = setTimeout(
              () =>
                reject(
                  new Error(`${pool.account.task.module} did not finish loading within ${LOAD_MS / 1000} s`)
                ),
              LOAD_MS
            )
          })
        ]).finally(() => clearTimeout(timer))
      } catch (err) {
        const field = /no function export/.test((err as Error).message) ? 'export' : 'module'
        throw new ShoalError(
          'CONFIG_INVALID',
          `tasks.${pool.account.name}.${field}: ${(err as Error).message}`,
          {
            cause: err
          }
        )
      }
    }
    this.warmTimer = setInterval(() => this.warm(), 1000)
    this.warmTimer.unref()
  }

  async close(): Promise<void> {
    clearInterval(this.warmTimer)
    await Promise.all([...this.pools.values()].map((p) => p.piscina.destroy().catch(() => undefined)))
  }

  /** The demand forecast of a task's pool (undefined: no pool of that name here). */
  forecast(taskName: string): DemandForecast | undefined {
    return this.pools.get(taskName)?.account.forecast
  }

  stats(): PoolStats[] {
    const now = performance.now()
    return [...this.pools.values()].map((p) => p.account.stats('module', p.piscina.threads.length, now))
  }

  /** Start threads up to each pool's forecast (a warm-up request makes a thread load the module). */
  private warm(): void {
    const now = performance.now()
    for (const p of this.pools.values()) {
      const missing = p.account.target(now) - p.piscina.threads.length
      for (let i = 0; i < missing; i++)
        p.piscina.run({ warm: true } satisfies ModuleRequest).catch((err: unknown) => {
          this.log.warn({ task: p.account.name, err: (err as Error).message }, 'cannot warm a module worker')
        })
    }
  }

  async run(req: TaskRun): Promise<TaskResult> {
    const started = performance.now()
    const pool = this.pools.get(req.taskName)
    if (pool === undefined)
      return { ...emptyResult(started), spawnError: `module task ${req.taskName} has no pool` }
    const entered = await this.enter(pool, req)
    if (entered !== 'ok') return notStarted(started, entered, 'worker thread')
    req.onStart?.()
    pool.account.started(pool.piscina.threads.length > pool.account.busy, started)
    const timeout = new AbortController()
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      timeout.abort('timeout')
    }, req.timeoutMs)
    const signal = req.signal !== undefined ? AbortSignal.any([req.signal, timeout.signal]) : timeout.signal
    const ctx = contextOf(req)
    let ranMs: number | undefined
    try {
      const answer = (await pool.piscina.run({ items: [...req.items], ctx } satisfies ModuleRequest, {
        signal
      })) as ModuleAnswer
      ranMs = answer?.[1]
      const metrics = new MetricsIntake()
      metrics.takeGrouped(answer?.[2] ?? [])
      metrics.dropped += answer?.[3] ?? 0
      return { ...(await outputResult(req, answer?.[0] ?? '', this.blobs, started)), ...metrics.result() }
    } catch (thrown) {
      const e = (thrown instanceof Error ? thrown : new Error(String(thrown))) as Error & { code?: string }
      if (timedOut)
        return {
          ...emptyResult(started),
          timedOut: true,
          signal: 'SIGKILL',
          stderrTail: 'the task ran past its timeout; its worker thread was ended'
        }
      if (req.signal?.aborted === true) return { ...emptyResult(started), aborted: true, signal: 'SIGKILL' }
      const exited = /worker exited with code:? (\d+)/.exec(e.message)
      const why =
        e.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? `the task ran out of memory (maxMemoryMb ${pool.account.task.maxMemoryMb ?? DEFAULT_MODULE_MEMORY_MB}); its worker thread was ended`
          : exited !== null
            ? `the task called process.exit(${exited[1]}); its worker thread was ended`
            : (e.stack ?? String(e))
      return {
        ...emptyResult(started),
        exitCode: exited !== null ? Number(exited[1]) || 1 : 1,
        stderrTail: why.slice(-STDERR_TAIL)
      }
    } finally {
      clearTimeout(timer)
      this.leave(pool)
      // The forecast wants how long the task ran, not how long it queued for a thread.
      pool.account.ended(ranMs ?? performance.now() - started)
    }
  }

  /** Take a thread's turn: at once while under the limit, else the first to come free (bounded by the lifespan and the signal). */
  private async enter(pool: Pool, req: TaskRun): Promise<'ok' | 'aborted' | 'timeout'> {
    if (req.signal?.aborted === true) return 'aborted'
    if (pool.active < pool.limit) {
      pool.active++
      return 'ok'
    }
    // Handed the turn of a fragment that left (leave counted it for this one).
    const got = await pool.waiting.wait(req.signal, req.timeoutMs)
    return typeof got === 'object' ? 'ok' : got
  }

  /** A fragment is done with its thread: hand its turn to the first waiting, if any. */
  private leave(pool: Pool): void {
    if (!pool.waiting.handOff(undefined)) pool.active--
  }

  /** Fragments of the task to hold per slot: its pool queues them (DemandForecast.depth). */
  depth(taskName: string): number {
    return this.pools.get(taskName)?.account.forecast.depth() ?? 1
  }
}

function contextOf(req: TaskRun): ModuleContext {
  const id = req.fragment
  const path = req.env.SHOAL_FRAGMENT_PATH ?? id?.path ?? '0'
  return {
    jobId: req.env.SHOAL_JOB_ID ?? id?.job.id ?? '',
    path,
    fragmentIndex: Number(path.split('.')[0]),
    fragmentCount: Number(req.env.SHOAL_FRAGMENT_COUNT ?? 1),
    attempt: Number(req.env.SHOAL_ATTEMPT ?? 1),
    leaseEpoch: Number(req.env.SHOAL_LEASE_EPOCH ?? id?.token ?? 0),
    peerId: req.env.SHOAL_PEER_ID ?? '',
    env: { ...req.env }
  }
}
