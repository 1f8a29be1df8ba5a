import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { ShoalError } from '../core/errors.ts'
import type { DemandForecast } from '../core/forecast.ts'
import type { BlobStore, TaskResult, TaskRun } from '../core/ports.ts'
import type { TaskConfig } from '../core/task.ts'
import { processStartTime, resolveCommand } from './command.ts'
import { MetricsIntake } from './metrics-intake.ts'
import { inTaskNetwork, taskNetwork } from './network.ts'
import { PoolAccount, type PoolStats, WaitQueue } from './pool.ts'
import { emptyResult, linesOf, notStarted, outputResult } from './result.ts'

const STDERR_TAIL = 8 * 1024
/** Idle workers beyond the warm target are stopped after this long. */
const IDLE_MS = 10_000

/** One long-lived worker process of a task. */
interface Worker {
  child: ChildProcess
  pid: number
  dir: string
  /** stdout since the last full line, in chunks (joined once the line ends). */
  partial: string[]
  partialBytes: number
  /** The id of the request outstanding, and the last one sent. */
  outstanding: number | undefined
  sent: number
  /** Why the worker broke the protocol (a line nobody asked for): it is being killed. */
  broken: string | undefined
  /** Receives the next line, or the end of the process. */
  waiter:
    | ((e: { line: string } | { exit: { code: number | null; signal: string | null } }) => void)
    | undefined
  stderr: string
  exited: { code: number | null; signal: string | null } | undefined
  idleSince: number
  /** Bytes of the answer being read, over maxOutputBytes: the worker is ended. */
  tooLong: boolean
}

interface Pool {
  account: PoolAccount
  task: TaskConfig
  idle: Worker[]
  all: Set<Worker>
  /** Workers being started (not yet in `all`). */
  starting: number
  /** Most workers at once: maxWarm, or the daemon's capacity if larger. */
  limit: number
  /** Fragments waiting for a worker: handed one as it comes free, or null when one may be started. */
  queue: WaitQueue<Worker | null>
}

/**
 * Persistent command workers (`"protocol": "ndjson"`): one long-lived process takes fragment
 * after fragment, each as one JSON line on its stdin, `{"items": [...], "env": {...}}` (env: the
 * SHOAL_* values and the job's env a cold process would get), and answers each with one JSON
 * line on stdout, `{"output": "..."}` (or `{"output": ["line", ...]}`), or
 * `{"error": "...", "exitCode": N}`. A worker that crashes, answers past the fragment's lifespan,
 * answers what is not JSON or whose claim is lost is killed (its process group) and replaced.
 * Each task keeps warm workers between `minWarm` and `maxWarm`, as many as its forecast asks.
 */
export class NdjsonRunner {
  private readonly pools = new Map<string, Pool>()
  private readonly o: { workRoot: string; taskPath: string; blobs?: BlobStore; log: Logger }
  private timer: NodeJS.Timeout | undefined
  private closed = false

  constructor(
    tasks: Record<string, TaskConfig>,
    options: { capacity: number; workRoot: string; taskPath: string; blobs?: BlobStore; log: Logger }
  ) {
    this.o = options
    for (const [name, task] of Object.entries(tasks)) {
      if (task.protocol !== 'ndjson') continue
      const account = new PoolAccount(name, task, options.capacity)
      this.pools.set(name, {
        account,
        task,
        idle: [],
        all: new Set(),
        starting: 0,
        limit: Math.max(account.max, options.capacity),
        queue: new WaitQueue()
      })
    }
  }

  takes(task: TaskConfig): boolean {
    return task.protocol === 'ndjson'
  }

  /** Check each worker's program can be found (a config error naming the task if not), then warm the pools. */
  async start(): Promise<void> {
    for (const p of this.pools.values()) {
      const file = p.task.command?.[0] ?? ''
      if (resolveCommand(file, this.o.taskPath, this.o.workRoot) === undefined)
        throw new ShoalError(
          'CONFIG_INVALID',
          `tasks.${p.account.name}.command: "${file}" is not an executable file${file.includes('/') ? '' : ' on the PATH'}`
        )
    }
    this.tend()
    this.timer = setInterval(() => this.tend(), 1000)
    this.timer.unref()
  }

  async close(): Promise<void> {
    this.closed = true
    clearInterval(this.timer)
    await Promise.all([...this.pools.values()].flatMap((p) => [...p.all].map((w) => this.kill(p, w))))
  }

  /** The demand forecast of a task's pool (undefined: no pool of that name here). */
  forecast(taskName: string): DemandForecast | undefined {
    return this.pools.get(taskName)?.account.forecast
  }

  stats(): PoolStats[] {
    const now = performance.now()
    return [...this.pools.values()].map((p) => p.account.stats('ndjson', p.all.size, now))
  }

  /** Start workers up to each pool's forecast; stop those idle too long beyond it. */
  private tend(): void {
    if (this.closed) return
    const now = performance.now()
    for (const p of this.pools.values()) {
      const target = p.account.target(now)
      for (let n = p.all.size; n < target; n++)
        this.spawn(p).then(
          (w) => this.release(p, w),
          (err: unknown) =>
            this.o.log.warn({ task: p.account.name, err: (err as Error).message }, 'cannot start a worker')
        )
      while (p.all.size > target && p.idle.length > 0 && now - (p.idle[0]?.idleSince ?? now) > IDLE_MS) {
        const w = p.idle.shift() as Worker
        void this.kill(p, w)
      }
    }
  }

  private async spawn(p: Pool): Promise<Worker> {
    const isolated = taskNetwork(p.task.network) !== 'host'
    const user = p.task.uid !== undefined ? { uid: p.task.uid, gid: p.task.gid ?? p.task.uid } : undefined
    const [file, ...args] = inTaskNetwork(p.task.command ?? [], p.task.network, user) as [string, ...string[]]
    p.starting++
    let dir: string
    try {
      dir = await mkdtemp(join(this.o.workRoot, 'worker-'))
    } catch (err) {
      // No worker after all: a fragment waiting for room may start one (or fail as this did).
      p.queue.handOff(null)
      throw err
    } finally {
      p.starting--
    }
    const child = spawn(file, args, {
      cwd: dir,
      env: { PATH: this.o.taskPath, ...p.task.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
      ...(p.task.uid !== undefined && !isolated ? { uid: p.task.uid } : {}),
      ...(p.task.gid !== undefined && !isolated ? { gid: p.task.gid } : {})
    })
    const w: Worker = {
      child,
      pid: child.pid ?? -1,
      dir,
      partial: [],
      partialBytes: 0,
      outstanding: undefined,
      sent: 0,
      broken: undefined,
      waiter: undefined,
      stderr: '',
      exited: undefined,
      idleSince: performance.now(),
      tooLong: false
    }
    p.all.add(w)
    // Its process group and start time, so a restart after a crash of this daemon reaps it.
    if (child.pid !== undefined) {
      try {
        writeFileSync(`${dir}.pid`, `${child.pid} ${processStartTime(child.pid) ?? ''}`.trim())
      } catch {
        // reaping is best effort
      }
    }
    child.stdin?.on('error', () => undefined)
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => {
      // Only the new chunk is searched for line ends: a large answer costs its length once.
      let start = 0
      for (let nl = chunk.indexOf('\n'); nl >= 0; nl = chunk.indexOf('\n', start)) {
        w.partial.push(chunk.slice(start, nl))
        const line = w.partial.join('')
        w.partial = []
        w.partialBytes = 0
        start = nl + 1
        this.onLine(p, w, line)
      }
      if (start < chunk.length) {
        w.partial.push(chunk.slice(start))
        w.partialBytes += chunk.length - start
      }
      if (w.partialBytes > MAX_LINE_BYTES) {
        w.tooLong = true
        void this.kill(p, w)
      }
    })
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', (chunk: string) => {
      w.stderr = (w.stderr + chunk).slice(-STDERR_TAIL)
    })
    child.on('error', (err) => {
      w.stderr = `${w.stderr}${err.message}\n`.slice(-STDERR_TAIL)
    })
    child.on('exit', (code, signal) => {
      w.exited = { code, signal }
      this.forget(p, w)
    })
    // Its end is taken once its pipes are closed too, so an answer written just before it
    // exited is read first (the exit event may come before the last stdout data).
    child.on('close', (code, signal) => {
      w.exited ??= { code, signal }
      const waiter = w.waiter
      w.waiter = undefined
      waiter?.({ exit: w.exited })
    })
    if (child.pid === undefined) {
      this.forget(p, w)
      throw new Error(`cannot start ${file}`)
    }
    return w
  }

  /** A line from a worker: the answer to its outstanding fragment, or a breach of the protocol. */
  private onLine(p: Pool, w: Worker, line: string): void {
    const waiter = w.waiter
    if (waiter === undefined || w.outstanding === undefined) {
      // Nobody asked: an extra answer. Had it stayed, it would be taken as the answer to the
      // worker's next fragment, and every answer after it would shift by one.
      w.broken ??= `the worker wrote a line nobody asked for: ${line.slice(0, 200)}`
      this.o.log.warn(
        { task: p.account.name, pid: w.pid },
        'a persistent worker answered out of turn; replacing it'
      )
      void this.kill(p, w)
      return
    }
    w.waiter = undefined
    w.outstanding = undefined
    waiter({ line })
  }

  private forget(p: Pool, w: Worker): void {
    if (p.all.delete(w)) p.queue.handOff(null)
    const i = p.idle.indexOf(w)
    if (i >= 0) p.idle.splice(i, 1)
    void Promise.all([
      rm(w.dir, { recursive: true, force: true }),
      rm(`${w.dir}.pid`, { force: true })
    ]).catch(() => undefined)
  }

  /** SIGKILL the worker's process group; resolves once it exited. */
  private async kill(p: Pool, w: Worker): Promise<void> {
    if (w.exited === undefined) {
      try {
        process.kill(-w.pid, 'SIGKILL')
      } catch {
        // gone already
      }
      await new Promise<void>((resolve) => {
        if (w.exited !== undefined) resolve()
        else w.child.once('exit', () => resolve())
      })
    }
    this.forget(p, w)
  }

  async run(req: TaskRun): Promise<TaskResult> {
    const started = performance.now()
    const p = this.pools.get(req.taskName)
    if (p === undefined)
      return { ...emptyResult(started), spawnError: `persistent task ${req.taskName} has no pool` }
    const refused = (got: 'aborted' | 'timeout' | Error): TaskResult =>
      got instanceof Error
        ? { ...emptyResult(started), spawnError: got.message }
        : notStarted(started, got, 'persistent worker')
    let got = await this.acquire(p, req)
    if (typeof got === 'string' || got instanceof Error) return refused(got)
    req.onStart?.()
    p.account.started(!got.fresh, started)
    const sent = performance.now()
    try {
      const r = await this.exchange(p, got.w, req, started, !got.fresh)
      if (r !== LEFT) return r
      // A warm worker ended without answering (see exchange): another worker runs the fragment,
      // and the fragment does not fail for the old one's end.
      got = await this.acquire(p, req)
      if (typeof got === 'string' || got instanceof Error) return refused(got)
      return (await this.exchange(p, got.w, req, started, false)) as TaskResult
    } finally {
      // The forecast wants how long the worker took, not how long the fragment waited for it.
      p.account.ended(performance.now() - sent)
    }
  }

  /** Fragments of the task to hold per slot: they wait for a busy worker (DemandForecast.depth). */
  depth(taskName: string): number {
    return this.pools.get(taskName)?.account.forecast.depth() ?? 1
  }

  /**
   * A worker for one fragment: an idle one, a new one while the pool is under its limit, or the
   * first to come free (bounded by the fragment's lifespan and its signal). Never more workers
   * than the limit; a worker that died after its last answer is never handed out.
   */
  private async acquire(
    p: Pool,
    req: TaskRun
  ): Promise<{ w: Worker; fresh: boolean } | 'aborted' | 'timeout' | Error> {
    const deadline = performance.now() + req.timeoutMs
    for (;;) {
      const idle = this.idleWorker(p)
      if (idle !== undefined) return { w: idle, fresh: false }
      if (p.all.size + p.starting < p.limit) {
        try {
          return { w: await this.spawn(p), fresh: true }
        } catch (err) {
          return err as Error
        }
      }
      const got = await p.queue.wait(req.signal, deadline - performance.now())
      if (got === 'aborted' || got === 'timeout') return got
      // Handed a worker: take it unless it is known to be ending (no /proc read here, on the
      // busiest path: one that died unseen after its answer costs a LEFT retry). Else (null:
      // room to start one) look again.
      const w = got.got
      if (w !== null && w.exited === undefined && w.broken === undefined) return { w, fresh: false }
    }
  }

  /** An idle worker still alive, if any. */
  private idleWorker(p: Pool): Worker | undefined {
    let w = p.idle.pop()
    while (w !== undefined && !usable(w)) w = p.idle.pop()
    return w
  }

  /** A worker done with its fragment: to the first fragment waiting, or to the idle list. */
  private release(p: Pool, w: Worker): void {
    // One that is ending (it broke the protocol, or exited after its answer) is not handed on:
    // its end wakes a waiting fragment (forget), which then starts another.
    if (w.exited !== undefined || w.broken !== undefined) return
    if (!p.queue.handOff(w)) {
      w.idleSince = performance.now()
      p.idle.push(w)
    }
  }

  /** One fragment with one worker: its line in, its answer (or its end) out. */
  private async exchange(
    p: Pool,
    w: Worker,
    req: TaskRun,
    started: number,
    /** The worker answered fragments before: its end without an answer may be its own (LEFT). */
    warm: boolean
  ): Promise<TaskResult | typeof LEFT> {
    let timedOut = false
    let aborted = false
    const answer = new Promise<{ line: string } | { exit: { code: number | null; signal: string | null } }>(
      (resolve) => {
        w.waiter = resolve
      }
    )
    const timer = setTimeout(() => {
      timedOut = true
      void this.kill(p, w)
    }, req.timeoutMs)
    const onAbort = (): void => {
      aborted = true
      void this.kill(p, w)
    }
    req.signal?.addEventListener('abort', onAbort, { once: true })
    if (req.signal?.aborted === true) onAbort()
    w.outstanding = ++w.sent
    w.child.stdin?.write(`${JSON.stringify({ id: w.outstanding, items: req.items, env: req.env })}\n`)
    const got = await answer
    clearTimeout(timer)
    req.signal?.removeEventListener('abort', onAbort)
    const stderrTail = w.stderr
    if (timedOut) return { ...emptyResult(started), timedOut: true, signal: 'SIGKILL', stderrTail }
    if (aborted) return { ...emptyResult(started), aborted: true, signal: 'SIGKILL', stderrTail }
    if (w.tooLong) return { ...emptyResult(started), outputTooLarge: true, stderrTail }
    const fail = (
      why: string,
      exit: { code: number | null; signal: string | null } = { code: 1, signal: null }
    ) => ({
      ...emptyResult(started),
      exitCode: exit.code,
      signal: exit.signal,
      stderrTail: `${stderrTail}${why}\n`.slice(-STDERR_TAIL)
    })
    if ('exit' in got) {
      // It ended without answering: the fragment fails (a clean exit too: no answer is no success).
      const { code, signal } = got.exit
      // From a worker that answered fragments before, the end may be its own (it was leaving,
      // or dying of something earlier): the fragment runs once more on another worker, and
      // fails only if that one ends without answering too (then it is the fragment's doing).
      if (warm) return LEFT
      return fail(
        `the persistent worker exited during the fragment (${signal ?? `code ${code}`}) without answering; it is replaced`,
        { code: signal !== null ? null : code === 0 || code === null ? 1 : code, signal }
      )
    }
    // An answer: a JSON object with a string or an array of lines as `output`, or an `error`,
    // naming the request it answers when it gives an `id`. Anything else breaks the protocol:
    // the worker is replaced (it may be out of step) and the fragment fails.
    let msg: { id?: unknown; output?: unknown; error?: unknown; exitCode?: unknown; metrics?: unknown }
    let bad: string | undefined
    try {
      msg = JSON.parse(got.line) as typeof msg
      if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) throw new Error('not an object')
    } catch {
      msg = {}
      bad = `the persistent worker answered a line that is not a JSON object: ${got.line.slice(0, 200)}`
    }
    if (bad === undefined && msg.id !== undefined && msg.id !== w.sent)
      bad = `the persistent worker answered request ${JSON.stringify(msg.id)} to request ${w.sent}`
    const lines = Array.isArray(msg.output) ? linesOf(msg.output) : undefined
    if (
      bad === undefined &&
      msg.error === undefined &&
      typeof msg.output !== 'string' &&
      typeof lines !== 'string'
    )
      bad = `the persistent worker's answer has no "output" (a string or an array of lines) and no "error": ${got.line.slice(0, 200)}`
    if (bad !== undefined) {
      void this.kill(p, w)
      return fail(bad)
    }
    this.release(p, w)
    // Metric values may come with the answer: `"metrics": [{ "name", "value", "labels" }]`.
    const metrics = new MetricsIntake()
    if (Array.isArray(msg.metrics)) metrics.take(msg.metrics)
    else if (msg.metrics !== undefined) metrics.dropped++
    if (msg.error !== undefined) {
      const code =
        typeof msg.exitCode === 'number' && Number.isInteger(msg.exitCode) && msg.exitCode !== 0
          ? msg.exitCode
          : 1
      return { ...fail(String(msg.error), { code, signal: null }), ...metrics.result() }
    }
    const out = typeof lines === 'string' ? lines : (msg.output as string)
    return { ...(await outputResult(req, out, this.o.blobs, started, stderrTail)), ...metrics.result() }
  }
}

/** Can this worker take a fragment: not ended, not breaking the protocol, its process alive (asked of /proc too: its exit event may be late)? */
function usable(w: Worker): boolean {
  return w.exited === undefined && w.broken === undefined && running(w.pid)
}

/** What exchange answers when a warm worker ended without answering (see run). */
const LEFT = Symbol('left')

/** Is the process running (not gone, not a zombie)? True when /proc cannot tell. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state !== 'Z' && state !== 'X'
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ENOENT'
  }
}

/** Longest answer line a worker may send (its output is held in memory: use a command task for more). */
const MAX_LINE_BYTES = 64 * 1024 * 1024
