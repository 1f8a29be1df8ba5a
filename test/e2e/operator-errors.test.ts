/**
 * Operator errors (issue 8): each mistake an operator can make when starting a daemon ends it
 * with exit code 2 and one line on stderr that names the flag or path, never a stack trace.
 */
import { spawn } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DaemonProcess, FAST, MAIN, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { health } from './helpers.ts'

const root = mkdtempSync(join(tmpdir(), 'shoal-operr-'))
const isRoot = process.getuid?.() === 0
/** Rows that run a daemon as another user need it to read the checkout: true when root. */
const NOBODY = 65534

/**
 * Can another user reach these files? Every directory above them needs search permission for
 * others: a checkout under `mktemp -d` (mode 0700) cannot be run as nobody at all.
 */
function othersCanReach(...files: string[]): boolean {
  return files.every((f) => {
    for (let d = dirname(f); d !== dirname(d); d = dirname(d))
      if ((statSync(d).mode & 0o001) === 0) return false
    return true
  })
}
/** How a row runs as nobody, or why it cannot here. */
const asNobody = !isRoot
  ? {}
  : othersCanReach(process.execPath, MAIN)
    ? { uid: NOBODY }
    : {
        skip: 'as root this row runs the daemon as nobody, who cannot reach this checkout (a parent directory lacks o+x, as under mktemp -d)'
      }

interface Run {
  code: number | null
  stderr: string
  timedOut: boolean
}

/**
 * Run `shoal daemon ARGS` with its own temp data dir and port 0 unless the row says otherwise.
 * A daemon that is still running after `timeoutMs` is killed by PID and the row fails.
 */
function daemon(
  args: string[],
  opts: { uid?: number; env?: Record<string, string>; timeoutMs?: number } = {}
): Promise<Run> {
  const dir = mkdtempSync(join(root, 'd-'))
  if (opts.uid !== undefined) chmodSync(dir, 0o777)
  const has = (flag: string) => args.includes(flag)
  const full = [
    MAIN,
    'daemon',
    ...(has('--data-dir') || opts.env?.SHOAL_DATA_DIR !== undefined ? [] : ['--data-dir', join(dir, 'data')]),
    ...(has('--api') ? [] : ['--api', '127.0.0.1:0']),
    ...(has('--listen') ? [] : ['--listen', '/ip4/127.0.0.1/tcp/0']),
    ...args
  ]
  return new Promise((resolve) => {
    const child = spawn(process.execPath, full, {
      env: { ...cleanEnv(), SHOAL_LOG_FORMAT: 'json', ...opts.env },
      stdio: ['ignore', 'ignore', 'pipe'],
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {})
    })
    let stderr = ''
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString()
    })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
    }, opts.timeoutMs ?? 30_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stderr, timedOut })
    })
    // A daemon that cannot even be started (EACCES on the binary, say) fails the row at once.
    child.on('error', (err) => {
      clearTimeout(timer)
      resolve({ code: null, stderr: `spawn failed: ${err.message}`, timedOut: false })
    })
  })
}

/** This process's environment without SHOAL_* settings, so only the row configures the daemon. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SHOAL_')))
}

let held: Server
let heldPort = 0
let roDir = ''

beforeAll(async () => {
  // A port some other process holds, for the "in use" rows.
  held = createServer()
  await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve))
  heldPort = (held.address() as { port: number }).port
  writeFileSync(join(root, 'a-file'), 'not a directory')
  writeFileSync(join(root, 'bad.json'), '{ "capacity": 2, ')
  writeFileSync(join(root, 'unknown-field.json'), '{ "capacty": 2 }')
  writeFileSync(join(root, 'array.json'), '[]')
  // Task configs: a module that is not there, a module without the export named, a protocol
  // nobody speaks. Module paths are relative to the config file.
  writeFileSync(join(root, 'task.mjs'), 'export default (items) => items\n')
  const taskConfig = (name: string, task: object) =>
    writeFileSync(join(root, name), JSON.stringify({ tasks: { t: task } }))
  taskConfig('no-module.json', { module: './no-such-task.mjs' })
  taskConfig('no-export.json', { module: './task.mjs', export: 'upper' })
  taskConfig('bad-protocol.json', { command: ['cat'], protocol: 'grpc' })
  taskConfig('both.json', { command: ['cat'], module: './task.mjs' })
  taskConfig('no-worker.json', { command: ['no-such-worker-program'], protocol: 'ndjson' })
  writeFileSync(join(root, 'secret.key'), 'unreadable', { mode: 0o000 })
  chmodSync(join(root, 'secret.key'), 0o000)
  mkdirSync(join(root, 'not-writable'), { mode: 0o555 })
  chmodSync(join(root, 'not-writable'), 0o555)
  chmodSync(root, 0o755)
  if (isRoot) {
    roDir = join(root, 'ro')
    mkdirSync(roDir)
    await mount(['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', roDir])
  }
})

afterAll(async () => {
  held.close()
  if (roDir !== '') await mount([roDir], 'umount').catch(() => undefined)
  rmSync(root, { recursive: true, force: true })
})

function mount(args: string[], cmd = 'mount'): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: 'ignore' })
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: ${code}`))))
  })
}

interface Row {
  name: string
  args: () => string[]
  /** What the line must name (the flag or field, and the value or path). */
  names: () => string[]
  uid?: number
  env?: Record<string, string>
  skip?: string
  /** How the line starts, when not a config or startup error (commander's own usage errors). */
  start?: RegExp
}

const rows: Row[] = [
  {
    name: 'API port in use',
    args: () => ['--api', `127.0.0.1:${heldPort}`],
    names: () => ['api (from --api)', `127.0.0.1:${heldPort}`, 'address already in use']
  },
  {
    name: 'p2p port in use',
    args: () => ['--listen', `/ip4/127.0.0.1/tcp/${heldPort}`],
    names: () => ['listen (from --listen)', `/ip4/127.0.0.1/tcp/${heldPort}`, 'address already in use']
  },
  {
    name: '--listen not a multiaddr',
    args: () => ['--listen', '127.0.0.1:7351'],
    names: () => ['listen (from --listen)', '127.0.0.1:7351', 'not a multiaddr']
  },
  {
    name: '--api not HOST:PORT',
    args: () => ['--api', 'garbage'],
    names: () => ['api (from --api)', '"garbage"', 'HOST:PORT']
  },
  {
    name: '--data-dir is a regular file',
    args: () => ['--data-dir', join(root, 'a-file')],
    names: () => ['dataDir (from --data-dir)', join(root, 'a-file'), 'is not a directory']
  },
  {
    name: '--data-dir under a regular file',
    args: () => ['--data-dir', join(root, 'a-file', 'sub')],
    names: () => ['dataDir (from --data-dir)', join(root, 'a-file', 'sub'), 'is not a directory']
  },
  {
    name: '--data-dir on a read-only file system',
    args: () => ['--data-dir', roDir],
    names: () => ['dataDir (from --data-dir)', roDir, 'read-only file system'],
    ...(isRoot ? {} : { skip: 'mounting a read-only tmpfs needs root' })
  },
  {
    name: '--data-dir to be created on a read-only file system',
    args: () => ['--data-dir', join(roDir, 'state', 'here')],
    names: () => ['dataDir (from --data-dir)', join(roDir, 'state', 'here'), 'read-only file system'],
    ...(isRoot ? {} : { skip: 'mounting a read-only tmpfs needs root' })
  },
  {
    // Root may write anywhere, so as root the daemon runs as nobody for this row.
    name: '--data-dir not writable',
    args: () => ['--data-dir', join(root, 'not-writable')],
    names: () => ['dataDir (from --data-dir)', join(root, 'not-writable'), 'permission denied'],
    ...asNobody
  },
  {
    name: 'SHOAL_DATA_DIR is a regular file',
    args: () => [],
    env: { SHOAL_DATA_DIR: join(root, 'a-file') },
    names: () => ['dataDir (from SHOAL_DATA_DIR)', join(root, 'a-file')]
  },
  {
    name: '--bootstrap not a multiaddr',
    args: () => ['--bootstrap', 'example.org:7071'],
    names: () => ['bootstrap (from --bootstrap)', 'example.org:7071', 'not a multiaddr']
  },
  {
    name: '--bootstrap without /p2p/<id>',
    args: () => ['--bootstrap', '/ip4/127.0.0.1/tcp/7071'],
    names: () => ['bootstrap (from --bootstrap)', '/ip4/127.0.0.1/tcp/7071', '/p2p/<peer id>']
  },
  {
    name: '--swarm-key missing',
    args: () => ['--swarm-key', join(root, 'no-such.key')],
    names: () => ['swarmKey (from --swarm-key)', join(root, 'no-such.key'), 'no such file']
  },
  {
    name: '--swarm-key unreadable',
    args: () => ['--swarm-key', join(root, 'secret.key')],
    names: () => ['swarmKey (from --swarm-key)', join(root, 'secret.key'), 'permission denied'],
    ...asNobody
  },
  {
    name: '--config missing',
    args: () => ['--config', join(root, 'no-such.json')],
    names: () => ['config (from --config)', join(root, 'no-such.json'), 'no such file']
  },
  {
    name: 'a module task whose module is missing',
    args: () => ['--config', join(root, 'no-module.json')],
    names: () => ['tasks.t.module', join(root, 'no-such-task.mjs'), 'no such file']
  },
  {
    name: 'a module task whose export is missing',
    args: () => ['--config', join(root, 'no-export.json')],
    names: () => ['tasks.t.export', join(root, 'task.mjs'), 'no function export "upper"', 'default']
  },
  {
    name: 'a task with an unknown protocol',
    args: () => ['--config', join(root, 'bad-protocol.json')],
    names: () => ['tasks.t.protocol', 'ndjson']
  },
  {
    name: 'a persistent worker whose program is not there',
    args: () => ['--config', join(root, 'no-worker.json')],
    names: () => ['tasks.t.command', '"no-such-worker-program"', 'PATH']
  },
  {
    name: 'a task that is both a command and a module',
    args: () => ['--config', join(root, 'both.json')],
    names: () => ['tasks.t', 'either "command"', '"module"']
  },
  {
    name: '--capacity not a number',
    args: () => ['--capacity', 'abc'],
    names: () => ['capacity (from --capacity)', 'integer']
  },
  {
    name: 'SHOAL_CAPACITY not a number',
    args: () => [],
    env: { SHOAL_CAPACITY: 'abc' },
    names: () => ['capacity (from SHOAL_CAPACITY)', 'integer']
  },
  {
    name: '--log-level not a level',
    args: () => ['--log-level', 'loud'],
    names: () => ['logLevel (from --log-level)', 'must be one of fatal, error']
  },
  {
    name: 'an unknown flag',
    args: () => ['--capacty', '4'],
    names: () => ["unknown option '--capacty'", 'Did you mean --capacity?'],
    start: /^shoal: /
  },
  {
    name: 'a config file with an unknown field',
    args: () => ['--config', join(root, 'unknown-field.json')],
    names: () => ['capacty (from config file', 'unknown field']
  },
  {
    name: 'a config file that holds no object',
    args: () => ['--config', join(root, 'array.json')],
    names: () => ['config (from --config)', join(root, 'array.json'), 'JSON object']
  },
  {
    name: '--config not valid JSON',
    args: () => ['--config', join(root, 'bad.json')],
    names: () => ['config (from --config)', join(root, 'bad.json'), 'not valid JSON']
  }
]

describe('operator errors: one line, exit 2, naming the flag or path, no stack trace', () => {
  it.each(rows)('$name', async (row) => {
    if (row.skip !== undefined) {
      console.warn(`skipped "${row.name}": ${row.skip}`)
      return
    }
    const r = await daemon(row.args(), {
      ...(row.uid !== undefined ? { uid: row.uid } : {}),
      ...(row.env !== undefined ? { env: row.env } : {})
    })
    expect(r.timedOut, `the daemon kept running; stderr: ${r.stderr}`).toBe(false)
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '')
    expect(lines, r.stderr).toHaveLength(1)
    const line = lines[0] as string
    expect(line).toMatch(row.start ?? /^shoal: (config error|cannot start): /)
    expect(r.stderr).not.toMatch(/\n\s+at /)
    expect(r.stderr).not.toContain('    at ')
    for (const n of row.names()) expect(line).toContain(n)
    expect(line).not.toMatch(/faultTolerance|transportManager/)
    expect(r.code, line).toBe(2)
  })
})

/** Run `shoal ARGS` (a client command, or none) and collect its exit code and stderr. */
function shoal(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { ...cleanEnv(), ...env },
      stdio: ['ignore', 'ignore', 'pipe']
    })
    let stderr = ''
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString()
    })
    const timer = setTimeout(() => child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), 20_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stderr, timedOut: false })
    })
  })
}

interface ClientRow {
  name: string
  args: () => string[]
  env?: Record<string, string>
  names: () => string[]
}

// None of these may reach a daemon: each is refused before any request (no daemon runs here, so
// one that tried would end with exit 3, "cannot reach").
const clientRows: ClientRow[] = [
  {
    name: '--api not a URL',
    args: () => ['--api', 'notaurl', 'peers'],
    names: () => ['api (from --api)', '"notaurl"', 'is not a URL', 'http://127.0.0.1:7070']
  },
  {
    name: '--api as HOST:PORT (the daemon flag) given to a client',
    args: () => ['--api', 'localhost:7070', 'jobs'],
    names: () => ['api (from --api)', '"localhost:7070"', 'not an http:// or https:// URL']
  },
  {
    name: 'SHOAL_API not a URL',
    args: () => ['jobs'],
    env: { SHOAL_API: '127.0.0.1:7070' },
    names: () => ['api (from SHOAL_API)', '"127.0.0.1:7070"', 'is not a URL']
  },
  {
    name: '--api with credentials in it',
    args: () => ['--api', 'http://ops:secret@127.0.0.1:7070', 'peers'],
    names: () => ['api (from --api)', 'credentials', '--token']
  },
  {
    name: 'an unknown command',
    args: () => ['frobnicate'],
    names: () => ["unknown command 'frobnicate'"]
  },
  {
    name: 'an unknown flag of a client command',
    args: () => ['jobs', '--stat', 'RUNNING'],
    names: () => ["unknown option '--stat'", 'Did you mean --state?']
  },
  {
    name: 'a missing argument',
    args: () => ['status'],
    names: () => ["missing required argument 'id'"]
  },
  {
    name: 'a flag value out of range',
    args: () => ['logs', 'JOB', '--attempt', '0'],
    names: () => ["'--attempt <n>'", "'0'", 'integer >= 1']
  },
  {
    name: 'a job spec file that is not there',
    args: () => ['submit', join(root, 'no-such-spec.json')],
    names: () => ['job spec', join(root, 'no-such-spec.json'), 'no such file']
  },
  {
    name: 'a job spec file that is not JSON',
    args: () => ['submit', join(root, 'bad.json')],
    names: () => ['job spec', join(root, 'bad.json'), 'not valid JSON']
  },
  {
    name: 'keygen without saying what',
    args: () => ['keygen'],
    names: () => ['keygen', '--swarm']
  }
]

describe('client commands: one line, exit 2, naming the flag or file, no request sent', () => {
  it.each(clientRows)('$name', async (row) => {
    const r = await shoal(row.args(), row.env)
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '')
    expect(lines, r.stderr).toHaveLength(1)
    const line = lines[0] as string
    expect(line).toMatch(/^shoal: /)
    expect(line).not.toContain('cannot reach')
    expect(r.stderr).not.toMatch(/\n\s+at /)
    for (const n of row.names()) expect(line).toContain(n)
    expect(r.code, line).toBe(2)
  })
})

describe('an unreachable bootstrap', () => {
  const d = new DaemonProcess({ name: 'lonely', config: FAST })
  const log = join(d.dataDir, 'daemon.log')
  // A well-formed address where nothing listens (port 1 on loopback) with a real peer id.
  const nowhere = '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWB2HycvHomMMcPb5djXqKut1JsKDaMrnfQtEbjzFHV7sq'
  afterAll(async () => {
    await stopAll([d])
  })

  it('starts anyway and logs one warn line naming the address it could not reach', async () => {
    d.options.bootstrap = [nowhere]
    d.options.logTo = log
    await d.start()
    const warns = await waitUntil('a warn line about the bootstrap', () => {
      const found = readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { level: number; msg: string; bootstrap?: string[] })
        .filter((l) => l.level === 40 && l.bootstrap !== undefined)
      return found.length > 0 ? found : null
    })
    expect(warns).toHaveLength(1)
    expect(warns[0]?.bootstrap).toEqual([nowhere])
    expect(warns[0]?.msg).toContain(nowhere)
    // Still serving: it runs alone, as the first daemon of a mesh would.
    expect((await fetch(`${d.api}/v1/health`)).status).toBe(200)
  })
})

describe('a bootstrap daemon that comes up later', () => {
  const all: DaemonProcess[] = []
  afterAll(async () => {
    await stopAll(all)
  })

  it('is joined once it is up: the daemon keeps redialing its bootstrap address', async () => {
    // Learn the later daemon's address (its identity stays in its data dir), then stop it.
    const late = new DaemonProcess({ name: 'late', config: FAST, p2pPort: await freePort() })
    all.push(late)
    await late.start()
    const addr = late.addr
    await late.stop()
    const early = new DaemonProcess({ name: 'early', config: FAST, bootstrap: [addr] })
    all.push(early)
    await early.start()
    await waitUntil('early to run alone', async () => (await health(early.api)).synced)
    await late.start()
    await waitUntil(
      'early to connect to the late bootstrap daemon',
      async () => (await health(early.api)).connections > 0
    )
  })
})

/** A TCP port free on loopback right now (the daemon binds it again a moment later). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}
