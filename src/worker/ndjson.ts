import { type ChildProcess, spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { BlobStore, TaskResult, TaskRun } from '../core/ports.ts'
import type { TaskConfig } from '../core/task.ts'
import { processStartTime } from './command.ts'
import { PoolAccount, type PoolStats } from './pool.ts'
import { emptyResult, outputResult } from './result.ts'

const STDERR_TAIL = 8 * 1024
/** Idle workers beyond the warm target are stopped after this long. */
const IDLE_MS = 10_000

/** One long-lived worker process of a task. */
interface Worker {
  child: ChildProcess
  pid: number
  dir: string
  /** Bytes of stdout since the last full line. */
  partial: string
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
      this.pools.set(name, {
        account: new PoolAccount(name, task, options.capacity),
        task,
        idle: [],
        all: new Set()
      })
    }
  }

  takes(task: TaskConfig): boolean {
    return task.protocol === 'ndjson'
  }

  async start(): Promise<void> {
    this.tend()
    this.timer = setInterval(() => this.tend(), 1000)
    this.timer.unref()
  }

  async close(): Promise<void> {
    this.closed = true
    clearInterval(this.timer)
    await Promise.all([...this.pools.values()].flatMap((p) => [...p.all].map((w) => this.kill(p, w))))
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
          (w) => p.idle.push(w),
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
    const [file, ...args] = p.task.command as [string, ...string[]]
    const dir = await mkdtemp(join(this.o.workRoot, 'worker-'))
    const child = spawn(file, args, {
      cwd: dir,
      env: { PATH: this.o.taskPath, ...p.task.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
      ...(p.task.uid !== undefined ? { uid: p.task.uid } : {}),
      ...(p.task.gid !== undefined ? { gid: p.task.gid } : {})
    })
    const w: Worker = {
      child,
      pid: child.pid ?? -1,
      dir,
      partial: '',
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
      w.partial += chunk
      let nl = w.partial.indexOf('\n')
      while (nl >= 0) {
        const line = w.partial.slice(0, nl)
        w.partial = w.partial.slice(nl + 1)
        const waiter = w.waiter
        w.waiter = undefined
        waiter?.({ line })
        nl = w.partial.indexOf('\n')
      }
      if (w.partial.length > MAX_LINE_BYTES) {
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

  private forget(p: Pool, w: Worker): void {
    p.all.delete(w)
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
    let w = p.idle.pop()
    p.account.started(w !== undefined, started)
    if (w === undefined) {
      try {
        w = await this.spawn(p)
      } catch (err) {
        p.account.ended(performance.now() - started)
        return { ...emptyResult(started), spawnError: (err as Error).message }
      }
    }
    const worker = w
    worker.stderr = ''
    try {
      return await this.exchange(p, worker, req, started)
    } finally {
      p.account.ended(performance.now() - started)
    }
  }

  /** One fragment with one worker: its line in, its answer (or its end) out. */
  private async exchange(p: Pool, w: Worker, req: TaskRun, started: number): Promise<TaskResult> {
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
    w.child.stdin?.write(`${JSON.stringify({ items: req.items, env: req.env })}\n`)
    const got = await answer
    clearTimeout(timer)
    req.signal?.removeEventListener('abort', onAbort)
    const stderrTail = w.stderr
    if (timedOut) return { ...emptyResult(started), timedOut: true, signal: 'SIGKILL', stderrTail }
    if (aborted) return { ...emptyResult(started), aborted: true, signal: 'SIGKILL', stderrTail }
    if (w.tooLong) return { ...emptyResult(started), outputTooLarge: true, stderrTail }
    if ('exit' in got) {
      // It died with the fragment: the fragment fails like a command that exited so.
      return {
        ...emptyResult(started),
        exitCode: got.exit.code,
        signal: got.exit.signal,
        stderrTail:
          `${stderrTail}the persistent worker exited during the fragment (${got.exit.signal ?? `code ${got.exit.code}`}); it is replaced\n`.slice(
            -STDERR_TAIL
          )
      }
    }
    let msg: { output?: unknown; error?: unknown; exitCode?: unknown }
    try {
      msg = JSON.parse(got.line) as typeof msg
      if (typeof msg !== 'object' || msg === null) throw new Error('not an object')
    } catch {
      void this.kill(p, w)
      return {
        ...emptyResult(started),
        exitCode: 1,
        stderrTail:
          `${stderrTail}the persistent worker answered a line that is not a JSON object: ${got.line.slice(0, 200)}\n`.slice(
            -STDERR_TAIL
          )
      }
    }
    w.idleSince = performance.now()
    p.idle.push(w)
    if (msg.error !== undefined) {
      const code =
        typeof msg.exitCode === 'number' && Number.isInteger(msg.exitCode) && msg.exitCode !== 0
          ? msg.exitCode
          : 1
      return {
        ...emptyResult(started),
        exitCode: code,
        stderrTail: `${stderrTail}${String(msg.error)}\n`.slice(-STDERR_TAIL)
      }
    }
    const out = Array.isArray(msg.output)
      ? msg.output.map((l) => `${typeof l === 'string' ? l : JSON.stringify(l)}\n`).join('')
      : typeof msg.output === 'string'
        ? msg.output
        : ''
    return outputResult(req, out, this.o.blobs, started, stderrTail)
  }
}

/** Longest answer line a worker may send (its output is held in memory: use a command task for more). */
const MAX_LINE_BYTES = 64 * 1024 * 1024
