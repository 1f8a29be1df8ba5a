import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { accessSync, constants, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { chown, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { basename, join, resolve } from 'node:path'
import type { Readable, Writable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { BlobRef, BlobStore, TaskResult, TaskRun, TaskRunner } from '../core/ports.ts'
import { Containment, type RunCgroup } from './cgroup.ts'
import { MetricsIntake } from './metrics-intake.ts'
import { inTaskNetwork, taskNetwork } from './network.ts'
import { emptyResult } from './result.ts'
import { Spill } from './spill.ts'

/** Default cap on the processes of one run (its cgroup's pids.max), when the task sets none. */
export const DEFAULT_MAX_PROCESSES = 512

const STDERR_TAIL = 8 * 1024

/**
 * Runs command tasks as child processes, each in a fresh working directory under `workRoot`,
 * in its own process group and, where the host allows, its own cgroup (see `Containment`), so
 * the end of a fragment kills everything it started.
 */
export class CommandExecutor implements TaskRunner {
  private readonly workRoot: string
  private readonly log: Logger
  /** Tidying of finished runs still under way (see settle). */
  private readonly tidying = new Set<Promise<void>>()
  readonly containment: Containment
  /** Where stdout past a run's inline size, and stderr past its tail, are streamed (none: kept inline). */
  private readonly blobs: BlobStore | undefined

  constructor(
    workRoot: string,
    log: Logger,
    containment = new Containment({ kind: 'process-group' }),
    blobs?: BlobStore
  ) {
    this.workRoot = workRoot
    this.log = log
    this.containment = containment
    this.blobs = blobs
  }

  async run(req: TaskRun): Promise<TaskResult> {
    const started = performance.now()
    let cwd: string
    try {
      cwd = await mkdtemp(join(this.workRoot, 'run-'))
    } catch (err) {
      return {
        ...emptyResult(started),
        spawnError: `cannot create a work dir: ${(err as Error).message}`,
        hostFault: true
      }
    }
    try {
      // A task run as another user owns its fresh working directory.
      if (req.uid !== undefined) await chown(cwd, req.uid, req.gid ?? req.uid)
      return await this.spawnIn(cwd, req, started)
    } finally {
      // Every process of the run is dead by now: tidying its work dir need not hold its slot.
      this.later(
        Promise.all([rm(cwd, { recursive: true, force: true }), rm(`${cwd}.pid`, { force: true })]).catch(
          (err: unknown) => {
            this.log.warn({ err, cwd }, 'cannot remove work dir')
          }
        )
      )
    }
  }

  /** Wait for the tidying of finished runs (work dirs, cgroups) still under way. */
  async settle(): Promise<void> {
    while (this.tidying.size > 0) await Promise.all([...this.tidying])
  }

  private later(p: Promise<unknown>): void {
    const t = p.then(
      () => undefined,
      () => undefined
    )
    this.tidying.add(t)
    void t.finally(() => this.tidying.delete(t))
  }

  /**
   * Kill the process groups of runs a previous life of this daemon left behind (a kill -9 of
   * the daemon does not reach its tasks). Their results could never be recorded; their leases
   * lapse with the old incarnation. Called at start, before the work root is cleared. With
   * cgroups, also kills what is left in the run cgroups of this data dir and removes them.
   */
  static async reapOrphans(workRoot: string, log: Logger, containment?: Containment): Promise<number> {
    const cgroups = (await containment?.reap()) ?? 0
    if (cgroups > 0) log.warn({ cgroups }, 'killed task cgroups left by a previous life')
    let names: string[]
    try {
      names = await readdir(workRoot)
    } catch {
      return cgroups
    }
    let reaped = cgroups
    for (const name of names.filter((n) => n.endsWith('.pid'))) {
      const [pidText, started] = (await readFile(join(workRoot, name), 'utf8').catch(() => ''))
        .trim()
        .split(' ')
      const pid = Number(pidText)
      if (!Number.isInteger(pid) || pid <= 1) continue
      // A process with the group's id that started at another time is not the task: the task
      // ended, and the id went to someone else, who may lead a group of that id. Leave it alone.
      const now = processStartTime(pid)
      if (now !== undefined && (started === undefined || now !== started)) {
        log.debug({ pgid: pid }, 'a task process group id was reused; not ours to kill')
        continue
      }
      if (!signalGroup(pid, 'SIGKILL')) continue
      reaped++
      await killGroupUntilGone(pid)
    }
    if (reaped > 0) log.warn({ reaped }, 'killed task processes left by a previous life')
    return reaped
  }

  /** Run one task in its cgroup (if any), and remove the cgroup once the run is over. */
  private async spawnIn(cwd: string, req: TaskRun, started: number): Promise<TaskResult> {
    let cg: RunCgroup | undefined
    try {
      cg = this.containment.create(basename(cwd), req.maxProcesses ?? DEFAULT_MAX_PROCESSES)
    } catch (err) {
      return { ...emptyResult(started), spawnError: (err as Error).message }
    }
    try {
      return await this.runChild(cwd, req, started, cg)
    } finally {
      // runChild killed what was left in the cgroup; removing it (which waits for the kernel to
      // reap the dead) need not hold the fragment's slot.
      if (cg !== undefined) {
        const run = cg
        this.later(
          this.containment.release(run).then((ok) => {
            if (!ok)
              this.log.warn({ cgroup: run.dirs }, 'a task cgroup did not empty; the next start reaps it')
          })
        )
      }
    }
  }

  /**
   * The fragment ends when its direct child exits (or at its timeout, or when aborted): at that
   * moment everything else the task started is SIGKILLed (its cgroup, else its process group),
   * then stdout and stderr are read to EOF, so data already written is kept. The result never
   * waits for a grandchild: a background process holding the pipes is killed, not waited on.
   */
  private runChild(
    cwd: string,
    req: TaskRun,
    started: number,
    cg: RunCgroup | undefined
  ): Promise<TaskResult> {
    return new Promise((resolve) => {
      // In a network of its own, the task drops to its user through setpriv, after the namespace
      // is made (which needs root); on the host's network, spawn sets the user.
      const isolated = taskNetwork(req.task.network) !== 'host'
      const user = req.uid !== undefined ? { uid: req.uid, gid: req.gid ?? req.uid } : undefined
      let [file, ...args] = inTaskNetwork(req.command, req.task.network, user) as [string, ...string[]]
      if (cg !== undefined || user !== undefined) {
        // The gate: a shell of ours that waits until the daemon has moved it into the run's
        // cgroup, then execs the task, so nothing the task starts is ever outside the cgroup.
        // It also closes what the daemon's process leaves open to its children (LevelDB opens
        // its files without close-on-exec): a task run as another user must not inherit a
        // writable handle on the state store. (Run as the daemon's own user, a task could open
        // those files anyway.)
        const resolved = resolveCommand(file, req.env.PATH, cwd)
        if (resolved === undefined) {
          resolve({ ...emptyResult(started), spawnError: `spawn ${file} ENOENT` })
          return
        }
        args = ['-c', cg !== undefined ? GATE : CLOSE_AND_EXEC, 'shoal-task', resolved, ...args]
        file = '/bin/bash'
        // --norc: with a socket for stdin, bash takes itself for a remote shell and reads ~/.bashrc.
        args.unshift('--norc', '--noprofile')
      }
      // stdout stays in memory up to the run's inline size, then streams into a blob; stderr
      // keeps its tail in memory and, when longer, the whole (up to maxOutputBytes) as a blob.
      const stdout = new Spill(this.blobs, req.inlineOutputBytes)
      const stderrAll = new Spill(this.blobs, STDERR_TAIL)
      let bytes = 0
      let stderr = Buffer.alloc(0)
      let hostFault = false
      let timedOut = false
      let outputTooLarge = false
      let aborted = false
      let spawnError: string | undefined
      let ending = false
      let killTimer: NodeJS.Timeout | undefined
      const hash = createHash('sha256')

      // The task's metrics stream is its fd 3 (SHOAL_METRICS_FD); with a gate, fd 3 is the gate's
      // and the gate moves fd 4 onto 3 as it execs the task.
      const metricsFd = cg !== undefined ? 4 : 3
      const metrics = new MetricsIntake()
      const child = spawn(file, args, {
        cwd,
        env: { ...req.env, SHOAL_METRICS_FD: '3' },
        stdio: cg !== undefined ? ['pipe', 'pipe', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe', 'pipe'],
        // Its own process group in every case: signals reach the group even without cgroups.
        detached: true,
        ...(req.uid !== undefined && !isolated ? { uid: req.uid } : {}),
        ...(req.gid !== undefined && !isolated ? { gid: req.gid } : {})
      })
      const pid = child.pid
      req.onStart?.()
      // Its process group id and start time, so a restart after a crash of this daemon can reap
      // it, and only it (a pid is reused soon after its process is gone).
      if (pid !== undefined) {
        try {
          writeFileSync(`${cwd}.pid`, `${pid} ${processStartTime(pid) ?? ''}`.trim())
        } catch (err) {
          this.log.warn({ err }, 'cannot record a task pid')
        }
      }
      if (cg !== undefined && pid !== undefined) {
        const gate = child.stdio[3] as Writable
        gate.on('error', () => undefined)
        try {
          cg.enter(pid)
          gate.end('go\n')
        } catch (err) {
          spawnError = `cannot move the task into its cgroup: ${(err as Error).message}`
          signalGroup(pid, 'SIGKILL')
        }
      }

      /** SIGKILL everything of the run until nothing is left (bounded). */
      const killAll = async (): Promise<void> => {
        if (pid === undefined) return
        signalGroup(pid, 'SIGKILL')
        if (cg !== undefined) await cg.kill()
        else await killGroupUntilGone(pid)
      }
      const stop = (): void => {
        if (pid === undefined) return
        signalGroup(pid, 'SIGTERM')
        cg?.signal('SIGTERM')
        killTimer ??= setTimeout(() => void killAll(), req.killGraceMs)
      }
      const timer = setTimeout(() => {
        timedOut = true
        stop()
      }, req.timeoutMs)
      const onAbort = (): void => {
        aborted = true
        void killAll()
      }
      req.signal?.addEventListener('abort', onAbort, { once: true })
      if (req.signal?.aborted === true) onAbort()

      // stdout and stderr reach EOF once every holder is gone; bounded, since a process that
      // left the process group (setsid, without cgroups) may hold them on.
      const closed = (s: Readable): Promise<void> =>
        s.closed ? Promise.resolve() : new Promise((r) => s.once('close', () => r()))
      const metricsStream = child.stdio[metricsFd] as Readable
      metricsStream.on('data', (chunk: Buffer) => metrics.write(chunk))
      metricsStream.on('error', () => undefined)
      const drained = Promise.all([closed(child.stdout), closed(child.stderr), closed(metricsStream)])

      const end = async (exit: { exitCode: number | null; signal: string | null }): Promise<void> => {
        if (ending) return
        ending = true
        clearTimeout(timer)
        clearTimeout(killTimer)
        req.signal?.removeEventListener('abort', onAbort)
        await killAll()
        // Read both pipes to EOF. A pipe still open after DRAIN_BOUND_MS with nothing read from
        // it meanwhile is held by a process that escaped the kill: cut it. But a pipe paused
        // because the blob store has not caught up, or one still being read (a loaded host reads
        // slowly), holds the task's own output: wait for it (up to DRAIN_PAUSED_MAX_MS), and if
        // even that is cut, the output is incomplete and the run is this host's failure.
        const waitStarted = performance.now()
        let taken = bytes + stderrAll.bytes
        for (;;) {
          let drainTimer: NodeJS.Timeout | undefined
          const done = await Promise.race([
            drained.then(() => true),
            new Promise<boolean>((r) => (drainTimer = setTimeout(() => r(false), DRAIN_BOUND_MS)))
          ])
          clearTimeout(drainTimer)
          if (done) break
          // A turn of the event loop first: timers run before pending reads, so on a busy loop
          // the bound can fire with output ready to be read.
          await new Promise((r) => setImmediate(r))
          const paused = child.stdout.isPaused() || child.stderr.isPaused()
          const flowing = bytes + stderrAll.bytes !== taken
          taken = bytes + stderrAll.bytes
          if (!paused && !flowing) break
          if (performance.now() - waitStarted >= DRAIN_PAUSED_MAX_MS) {
            spawnError ??= `the output could not be stored as fast as the task wrote it (${bytes} bytes taken)`
            hostFault = true
            break
          }
        }
        child.stdout.destroy()
        child.stderr.destroy()
        child.stdin.destroy()
        metricsStream.destroy()
        metrics.end()
        // The output of a run stopped before its end is nobody's result: not kept.
        let inline = ''
        let stored = false
        if (timedOut || outputTooLarge || aborted || spawnError !== undefined) stdout.discard()
        else {
          try {
            const out = await stdout.end()
            if ('blob' in out) stored = true
            else inline = out.inline.toString('utf8')
          } catch (err) {
            // This host could not keep the output (a full disk): another daemon should run it.
            spawnError = `cannot store the output: ${(err as Error).message}`
            hostFault = true
          }
        }
        let stderrBlob: BlobRef | undefined
        try {
          const all = await stderrAll.end()
          if ('blob' in all) stderrBlob = all.blob
        } catch (err) {
          this.log.warn({ err: (err as Error).message }, 'cannot store a task stderr; its tail is kept')
        }
        resolve({
          ...exit,
          stdout: inline,
          stored,
          sha256: hash.digest('hex'),
          bytes,
          stderrTail: stderr.toString('utf8'),
          ...(stderrBlob !== undefined ? { stderrBlob } : {}),
          timedOut,
          outputTooLarge,
          aborted,
          ...(spawnError !== undefined ? { spawnError } : {}),
          ...(hostFault ? { hostFault } : {}),
          durationMs: performance.now() - started,
          ...metrics.result()
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
        // The blob store sets the pace: stop reading (the task blocks on its pipe) until it caught up.
        if (!stdout.write(chunk)) {
          child.stdout.pause()
          stdout.onDrain(() => child.stdout.resume())
        }
        if (stdout.failure !== undefined) stop()
      })
      child.stderr.on('data', (chunk: Buffer) => {
        stderr = Buffer.concat([stderr, chunk])
        if (stderr.length > STDERR_TAIL) stderr = stderr.subarray(stderr.length - STDERR_TAIL)
        const room = req.maxOutputBytes - stderrAll.bytes
        if (room > 0 && !stderrAll.write(chunk.length > room ? chunk.subarray(0, room) : chunk)) {
          child.stderr.pause()
          stderrAll.onDrain(() => child.stderr.resume())
        }
      })
      // A task that does not read its stdin closes the pipe early: that is not an error.
      child.stdin.on('error', () => undefined)
      child.on('error', (err) => {
        spawnError ??= err.message
        // Not started at all: no exit will come.
        if (child.pid === undefined) void end({ exitCode: null, signal: null })
      })
      child.on('exit', (exitCode, signal) => void end({ exitCode, signal }))
      child.stdin.end(req.lines.length > 0 ? `${req.lines.join('\n')}\n` : '')
    })
  }
}

/** Bash: close every descriptor above `last` (bash can name any; dash only 0-9). */
const closeAbove = (last: number): string =>
  `for f in /proc/$$/fd/*; do n=\${f##*/}; if [ "$n" -gt ${last} ]; then { exec {n}>&-; } 2>/dev/null; fi; done`
/**
 * Waits on fd 3 until the daemon has put it into its cgroup (EOF: the daemon is gone), closes
 * what it inherited beyond its stdio, the gate and the metrics stream, then execs the task with
 * the metrics stream (fd 4) as its fd 3.
 */
const GATE = `read -r _ <&3 || exit 125; ${closeAbove(4)}; exec "$@" 3<&4 4<&-`
/** Without a cgroup, for a task run as another user: only the closing. */
const CLOSE_AND_EXEC = `${closeAbove(3)}; exec "$@"`
/** Longest wait for stdout/stderr to reach EOF once the run's processes are killed. */
const DRAIN_BOUND_MS = 1000
/** Longest wait for a pipe paused while the blob store catches up, once the run's processes are killed. */
const DRAIN_PAUSED_MAX_MS = 120_000
/** Rounds of kill(-pgid) (10 ms apart) before giving up on a process group. */
const KILL_TRIES = 500

/**
 * SIGKILL a process group until no live member is left. A process group id stays valid while
 * any member lives, so this works after the leader is gone, and a forking group converges.
 * Zombies count as members until their parent (often init) reaps them, so once kills go through
 * we also look in /proc: a group of zombies only is done.
 */
async function killGroupUntilGone(pgid: number): Promise<void> {
  for (let i = 0; i < KILL_TRIES && signalGroup(pgid, 'SIGKILL'); i++) {
    if (i > 0 && !hasLiveMember(pgid)) return
    await sleep(10)
  }
}

/** Does any process of this group still run (not a zombie)? True when /proc cannot tell. */
function hasLiveMember(pgid: number): boolean {
  let pids: string[]
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n))
  } catch {
    return true
  }
  for (const p of pids) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${p}/stat`, 'utf8')
    } catch {
      continue // gone meanwhile
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so cut at the last ')'.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true
  }
  return false
}

/** Signal a process group; false once it has no member left. */
function signalGroup(pgid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, sig)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

/**
 * When a process started (field 22 of /proc/PID/stat, in clock ticks since boot), or undefined
 * when there is no such process (or no /proc). With the pid, it names one process for good.
 */
export function processStartTime(pid: number): string | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name (field 2) is in parentheses and may hold anything: count from the last ')'.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
}

/** argv[0] as execvp would find it in PATH; undefined when there is no such executable. */
export function resolveCommand(file: string, path: string | undefined, cwd: string): string | undefined {
  const candidates = file.includes('/')
    ? [resolve(cwd, file)]
    : (path ?? '').split(':').map((d) => join(d === '' ? cwd : resolve(cwd, d), file))
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK)
      if (statSync(c).isFile()) return c
    } catch {
      // not this one
    }
  }
  return undefined
}
