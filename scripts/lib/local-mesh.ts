/**
 * Start and stop real daemon processes on loopback, each with its own temp data dir and port 0.
 * Used by `npm run mesh`, the benchmarks and the multi-daemon tests.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parentCgroupName } from '../../src/worker/containment.ts'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const MAIN = join(ROOT, 'src', 'main.ts')

export interface DaemonInfo {
  peerId: string
  multiaddrs: string[]
  api: string
  pid: number
  name: string
}

export interface StartOptions {
  name: string
  dataDir?: string
  bootstrap?: string[]
  /** Extra config (written to a config file in the data dir). */
  config?: Record<string, unknown>
  env?: Record<string, string>
  /** Where the daemon's stdout/stderr go: 'ignore', 'inherit', or a file path. */
  logTo?: 'ignore' | 'inherit' | string
  /** Fixed ports instead of 0 (so others can redial after a restart). */
  apiPort?: number
  p2pPort?: number
}

/** Settings that make a test mesh react fast (Serf's testConfig idea). */
export const FAST = {
  tasks: {
    echo: { command: ['cat'] },
    'slow-echo': { command: ['sh', '-c', 'sleep 0.2; cat'] },
    noop: { command: ['true'] },
    fail: { command: ['sh', '-c', 'exit 3'] }
  },
  // Tests poll hard from one address; the rate limit has its own test.
  rateLimitPerMinute: 0,
  heartbeatMs: 200,
  suspectMs: 1000,
  syncIntervalMs: 1000,
  stealDelayMs: 500,
  tickMs: 50,
  killGraceMs: 500,
  shutdownGraceMs: 2000
}

/** Every daemon child still running: killed by PID when this process exits, however it exits. */
const live = new Set<ChildProcess>()
process.once('exit', () => {
  for (const c of live) {
    try {
      if (c.pid !== undefined) process.kill(c.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
})

/** A running daemon process. */
export class DaemonProcess {
  readonly name: string
  readonly dataDir: string
  readonly options: StartOptions
  child: ChildProcess | undefined
  info: DaemonInfo | undefined
  private exited: Promise<number | null> | undefined

  constructor(options: StartOptions) {
    this.options = options
    this.name = options.name
    this.dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), `shoal-${options.name}-`))
  }

  get api(): string {
    if (this.info === undefined) throw new Error(`${this.name} is not ready`)
    return this.info.api
  }

  get peerId(): string {
    if (this.info === undefined) throw new Error(`${this.name} is not ready`)
    return this.info.peerId
  }

  /** A multiaddr of this daemon on loopback, with /p2p/<id>. */
  get addr(): string {
    const a = this.info?.multiaddrs.find((m) => m.includes('/ip4/127.0.0.1/'))
    if (a === undefined) throw new Error(`${this.name} has no loopback address`)
    return a
  }

  async start(timeoutMs = 30_000): Promise<DaemonInfo> {
    if (this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null) {
      throw new Error(`${this.name} is already running (pid ${this.child.pid})`)
    }
    const o = this.options
    const readyFile = join(this.dataDir, 'daemon.json')
    rmSync(readyFile, { force: true })
    const configFile = join(this.dataDir, 'test-config.json')
    writeFileSync(configFile, JSON.stringify(o.config ?? {}))
    const args = [
      MAIN,
      'daemon',
      '--config',
      configFile,
      '--data-dir',
      this.dataDir,
      '--name',
      o.name,
      '--api',
      `127.0.0.1:${o.apiPort ?? 0}`,
      '--listen',
      `/ip4/127.0.0.1/tcp/${o.p2pPort ?? 0}`,
      ...(o.bootstrap ?? []).flatMap((b) => ['--bootstrap', b])
    ]
    const logTo = o.logTo ?? 'ignore'
    let stdio: Array<'ignore' | 'inherit' | number> = ['ignore', 'ignore', 'ignore']
    if (logTo === 'inherit') stdio = ['ignore', 'inherit', 'inherit']
    else if (logTo !== 'ignore') {
      const { openSync } = await import('node:fs')
      const fd = openSync(logTo, 'a')
      stdio = ['ignore', fd, fd]
    }
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { ...process.env, SHOAL_LOG_FORMAT: 'json', ...o.env },
      // Its own process group: a Ctrl-C meant for the parent does not reach the daemon twice.
      detached: true,
      stdio
    })
    this.child = child
    live.add(child)
    this.exited = new Promise((resolve) =>
      child.once('exit', (code) => {
        live.delete(child)
        resolve(code)
      })
    )
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`${this.name} exited with ${child.exitCode} before ready`)
      if (existsSync(readyFile)) {
        try {
          this.info = JSON.parse(readFileSync(readyFile, 'utf8')) as DaemonInfo
          return this.info
        } catch {
          // being written: try again
        }
      }
      await sleep(50)
    }
    this.kill('SIGKILL')
    throw new Error(`${this.name} was not ready within ${timeoutMs} ms`)
  }

  /** Send a signal to the daemon (by its PID). */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    const child = this.child
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid, signal)
    }
  }

  /** Wait for the process to exit; resolves with its exit code. */
  async waitExit(timeoutMs = 30_000): Promise<number | null> {
    if (this.exited === undefined) return null
    const t = sleep(timeoutMs).then(() => 'timeout' as const)
    const r = await Promise.race([this.exited, t])
    if (r === 'timeout') throw new Error(`${this.name} did not exit within ${timeoutMs} ms`)
    return r
  }

  /** SIGTERM (graceful leave), then SIGKILL if it takes too long. */
  async stop(timeoutMs = 15_000): Promise<number | null> {
    if (this.child === undefined || this.child.exitCode !== null || this.child.signalCode !== null) {
      return this.child?.exitCode ?? null
    }
    this.kill('SIGTERM')
    try {
      return await this.waitExit(timeoutMs)
    } catch {
      this.kill('SIGKILL')
      return this.waitExit(5000)
    }
  }

  /** Kill what its tasks left running in their cgroups (after a SIGKILL), and remove its data. */
  removeData(): void {
    reapCgroups(this.dataDir)
    rmSync(this.dataDir, { recursive: true, force: true })
  }
}

export interface MeshOptions {
  count: number
  config?: Record<string, unknown>
  env?: Record<string, string>
  logTo?: (name: string) => 'ignore' | 'inherit' | string
  names?: string[]
  /** Fixed ports per daemon index (default: port 0). */
  ports?: (index: number) => { apiPort: number; p2pPort: number }
}

/** Start `count` daemons: the first alone, the others bootstrapped from it. */
export async function startMesh(o: MeshOptions): Promise<DaemonProcess[]> {
  const names = o.names ?? Array.from({ length: o.count }, (_, i) => `d${i + 1}`)
  const daemons: DaemonProcess[] = []
  try {
    const first = new DaemonProcess({
      name: names[0] as string,
      config: o.config,
      env: o.env,
      logTo: o.logTo?.(names[0] as string),
      ...o.ports?.(0)
    })
    daemons.push(first)
    await first.start()
    const rest = names.slice(1).map(
      (name, i) =>
        new DaemonProcess({
          name,
          config: o.config,
          env: o.env,
          bootstrap: [first.addr],
          logTo: o.logTo?.(name),
          ...o.ports?.(i + 1)
        })
    )
    daemons.push(...rest)
    await Promise.all(rest.map((d) => d.start()))
    return daemons
  } catch (err) {
    await stopAll(daemons)
    throw err
  }
}

/** Kill every daemon (SIGKILL) and remove their data dirs. */
export async function stopAll(daemons: readonly DaemonProcess[], { keepData = false } = {}): Promise<void> {
  for (const d of daemons) d.kill('SIGKILL')
  await Promise.all(daemons.map((d) => d.waitExit(10_000).catch(() => null)))
  if (!keepData) for (const d of daemons) d.removeData()
}

/**
 * A daemon killed with SIGKILL leaves its tasks running in their cgroups (by design: its next
 * start reaps them), but a test daemon has no next start. Kill whatever is left in the run
 * cgroups of this data dir (and only those), then remove them.
 */
function reapCgroups(dataDir: string): void {
  const parent = parentCgroupName(createHash('sha256').update(resolve(dataDir)).digest('hex'))
  const dirs = ['', 'unified', 'pids', 'freezer']
    .map((h) => join('/sys/fs/cgroup', h, parent))
    .filter((d) => existsSync(d))
  const runs = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => join(dir, e.name))
  const procs = (dir: string): number[] => {
    try {
      return readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number)
    } catch {
      return []
    }
  }
  const deadline = Date.now() + 3000
  for (const dir of dirs) {
    for (const run of runs(dir)) {
      while (procs(run).length > 0 && Date.now() < deadline) {
        try {
          writeFileSync(join(run, 'cgroup.kill'), '1')
        } catch {
          for (const pid of procs(run)) {
            try {
              process.kill(pid, 'SIGKILL')
            } catch {
              // gone
            }
          }
        }
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10)
      }
      try {
        rmdirSync(run)
      } catch {
        // still busy: left for the host
      }
    }
    try {
      rmdirSync(dir)
    } catch {
      // not empty
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** Poll until `fn` returns a truthy value; throws with `what` after timeoutMs. */
export async function waitUntil<T>(
  what: string,
  fn: () => Promise<T> | T,
  timeoutMs = 30_000,
  everyMs = 100
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  let lastErr: unknown
  while (Date.now() < deadline) {
    try {
      const v = await fn()
      if (v) return v as NonNullable<T>
    } catch (err) {
      lastErr = err
    }
    await sleep(everyMs)
  }
  throw new Error(
    `timed out waiting for ${what}${lastErr !== undefined ? ` (last error: ${String(lastErr)})` : ''}`
  )
}
