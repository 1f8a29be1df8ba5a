import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { chown, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'

/** One run of a command task. */
export interface CommandRun {
  /** argv; no shell unless argv[0] is one. */
  command: string[]
  /** The complete environment of the child (already scrubbed by the caller). */
  env: Record<string, string>
  /** stdin lines. */
  lines: string[]
  /** Lifespan; past it: SIGTERM, then SIGKILL after killGraceMs. */
  timeoutMs: number
  killGraceMs: number
  /** Largest stdout kept; beyond it the run is stopped and reported too large. */
  maxOutputBytes: number
  /** Aborting kills the process group at once (the claim was lost, or the job cancelled). */
  signal?: AbortSignal
  /** Run as this user and group (the daemon runs as root). */
  uid?: number
  gid?: number
}

export interface CommandResult {
  exitCode: number | null
  signal: string | null
  stdout: string
  /** sha256 of stdout, hex. */
  sha256: string
  bytes: number
  /** Last bytes of stderr, for people. */
  stderrTail: string
  timedOut: boolean
  outputTooLarge: boolean
  aborted: boolean
  spawnError?: string
  durationMs: number
}

const STDERR_TAIL = 8 * 1024

/**
 * Runs command tasks as child processes, each in a fresh working directory under `workRoot`,
 * in its own process group so a kill reaches everything it started.
 */
export class CommandExecutor {
  private readonly workRoot: string
  private readonly log: Logger

  constructor(workRoot: string, log: Logger) {
    this.workRoot = workRoot
    this.log = log
  }

  async run(req: CommandRun): Promise<CommandResult> {
    const started = performance.now()
    const cwd = await mkdtemp(join(this.workRoot, 'run-'))
    // A task run as another user owns its fresh working directory.
    if (req.uid !== undefined) await chown(cwd, req.uid, req.gid ?? req.uid)
    try {
      return await this.spawnIn(cwd, req, started)
    } finally {
      await Promise.all([rm(cwd, { recursive: true, force: true }), rm(`${cwd}.pid`, { force: true })]).catch(
        (err: unknown) => {
          this.log.warn({ err, cwd }, 'cannot remove work dir')
        }
      )
    }
  }

  /**
   * Kill the process groups of runs a previous life of this daemon left behind (a kill -9 of
   * the daemon does not reach its tasks). Their results could never be recorded; their leases
   * lapse with the old incarnation. Called at start, before the work root is cleared.
   */
  static async reapOrphans(workRoot: string, log: Logger): Promise<number> {
    let names: string[]
    try {
      names = await readdir(workRoot)
    } catch {
      return 0
    }
    let reaped = 0
    for (const name of names.filter((n) => n.endsWith('.pid'))) {
      const pid = Number(await readFile(join(workRoot, name), 'utf8').catch(() => ''))
      if (!Number.isInteger(pid) || pid <= 1) continue
      try {
        process.kill(-pid, 'SIGKILL')
        reaped++
      } catch {
        // already gone
      }
    }
    if (reaped > 0) log.warn({ reaped }, 'killed task processes left by a previous life')
    return reaped
  }

  private spawnIn(cwd: string, req: CommandRun, started: number): Promise<CommandResult> {
    return new Promise((resolve) => {
      const [file, ...args] = req.command
      const stdout: Buffer[] = []
      let bytes = 0
      let stderr = Buffer.alloc(0)
      let timedOut = false
      let outputTooLarge = false
      let aborted = false
      let settled = false
      let killTimer: NodeJS.Timeout | undefined
      const hash = createHash('sha256')

      const child = spawn(file as string, args, {
        cwd,
        env: req.env,
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
        ...(req.uid !== undefined ? { uid: req.uid } : {}),
        ...(req.gid !== undefined ? { gid: req.gid } : {})
      })
      // Its process group id, so a restart after a crash of this daemon can reap it.
      if (child.pid !== undefined) {
        try {
          writeFileSync(`${cwd}.pid`, String(child.pid))
        } catch (err) {
          this.log.warn({ err }, 'cannot record a task pid')
        }
      }
      const killGroup = (sig: NodeJS.Signals): void => {
        if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
        try {
          process.kill(-child.pid, sig)
        } catch {
          child.kill(sig)
        }
      }
      const stop = (): void => {
        killGroup('SIGTERM')
        killTimer ??= setTimeout(() => killGroup('SIGKILL'), req.killGraceMs)
      }
      const timer = setTimeout(() => {
        timedOut = true
        stop()
      }, req.timeoutMs)
      const onAbort = (): void => {
        aborted = true
        killGroup('SIGKILL')
      }
      req.signal?.addEventListener('abort', onAbort, { once: true })
      if (req.signal?.aborted === true) onAbort()

      const finish = (r: Partial<CommandResult>): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        clearTimeout(killTimer)
        req.signal?.removeEventListener('abort', onAbort)
        const out = Buffer.concat(stdout)
        resolve({
          exitCode: null,
          signal: null,
          stdout: out.toString('utf8'),
          sha256: hash.digest('hex'),
          bytes,
          stderrTail: stderr.toString('utf8'),
          timedOut,
          outputTooLarge,
          aborted,
          durationMs: performance.now() - started,
          ...r
        })
      }

      child.stdout.on('data', (chunk: Buffer) => {
        if (outputTooLarge) return
        if (bytes + chunk.length > req.maxOutputBytes) {
          outputTooLarge = true
          stop()
          return
        }
        bytes += chunk.length
        hash.update(chunk)
        stdout.push(chunk)
      })
      child.stderr.on('data', (chunk: Buffer) => {
        stderr = Buffer.concat([stderr, chunk])
        if (stderr.length > STDERR_TAIL) stderr = stderr.subarray(stderr.length - STDERR_TAIL)
      })
      // A task that does not read its stdin closes the pipe early: that is not an error.
      child.stdin.on('error', () => undefined)
      child.on('error', (err) => finish({ spawnError: err.message }))
      child.on('close', (code, signal) => finish({ exitCode: code, signal }))
      child.stdin.end(req.lines.length > 0 ? `${req.lines.join('\n')}\n` : '')
    })
  }
}
