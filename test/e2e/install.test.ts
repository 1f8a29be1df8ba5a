import { execFile, spawn } from 'node:child_process'
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { ROOT, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { alive } from './helpers.ts'

const run = promisify(execFile)
/** A machine's own tools only: its Node (20 here) and npm, not the project's node_modules/.bin. */
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
const work = mkdtempSync(join(tmpdir(), 'shoal-install-'))
afterAll(() => rmSync(work, { recursive: true, force: true }))

/** Start `argv` with the system's PATH and a fresh data dir; resolves once its daemon.json is written. */
async function startDaemon(argv: string[], cwd: string, name: string) {
  const data = join(work, `${name}-data`)
  const child = spawn(argv[0] as string, argv.slice(1), {
    cwd,
    env: {
      PATH: SYSTEM_PATH,
      HOME: process.env.HOME ?? '/root',
      SHOAL_DATA_DIR: data,
      SHOAL_API: '127.0.0.1:0',
      SHOAL_LISTEN: '/ip4/127.0.0.1/tcp/0',
      SHOAL_LOG_FORMAT: 'json'
    },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout?.on('data', (b: Buffer) => (output += b.toString()))
  child.stderr?.on('data', (b: Buffer) => (output += b.toString()))
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
  const info = await waitUntil(
    `${name} to start (${output.slice(-300)})`,
    () => {
      const f = join(data, 'daemon.json')
      return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as { api: string; pid: number }) : undefined
    },
    60_000
  )
  return { child, info, exited, output: () => output }
}

describe('installed like a service', () => {
  it('a package from npm pack, installed with --omit=dev into an empty prefix, runs a daemon on a machine whose node is 20; SIGTERM stops it with exit 0', async () => {
    const system = await run('node', ['--version'], { env: { PATH: SYSTEM_PATH } })
    // The point of the test: the machine's own Node cannot run Shoal (libp2p 3 needs 22).
    expect(system.stdout.trim()).toMatch(/^v\d+\./)
    await run('npm', ['pack', '--pack-destination', work], { cwd: ROOT, env: { ...process.env } })
    const tarball = readdirSync(work).find((f) => f.endsWith('.tgz')) as string
    const prefix = join(work, 'prefix')
    await run(
      'npm',
      [
        'install',
        '-g',
        '--prefix',
        prefix,
        '--omit=dev',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        join(work, tarball)
      ],
      { env: { PATH: SYSTEM_PATH, HOME: process.env.HOME ?? '/root' }, maxBuffer: 1 << 24 }
    ).catch((err: { stderr?: string; message: string }) => {
      throw new Error(`npm install of the tarball failed: ${err.stderr?.slice(-2000) ?? err.message}`)
    })
    const installed = join(prefix, 'lib', 'node_modules', 'shoal')
    // No dev tools came along, and no sources: the compiled build.
    for (const dev of ['typescript', 'vitest', '@biomejs/biome', 'playwright-core'])
      expect(existsSync(join(installed, 'node_modules', dev)), dev).toBe(false)
    expect(existsSync(join(installed, 'src'))).toBe(false)
    expect(existsSync(join(installed, 'dist', 'main.js'))).toBe(true)
    const version = await run(join(prefix, 'bin', 'shoal'), ['--version'], { env: { PATH: SYSTEM_PATH } })
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version)

    const d = await startDaemon([join(prefix, 'bin', 'shoal'), 'daemon'], work, 'installed')
    const health = await fetch(`${d.info.api}/v1/health`)
    expect(health.status).toBe(200)
    // Its dashboard and the compiled module workers came along (files beside the compiled code).
    const page = await fetch(`${d.info.api}/`)
    expect(page.status).toBe(200)
    d.child.kill('SIGTERM')
    expect(await d.exited, d.output().slice(-500)).toBe(0)
    expect(alive(d.info.pid)).toBe(false)
  }, 300_000)

  it('SIGTERM to `npm start` (what a supervisor sends) stops the daemon, not only npm', async () => {
    const d = await startDaemon(['npm', 'start'], ROOT, 'npm-start')
    expect(d.info.pid).not.toBe(d.child.pid) // npm, then the daemon it started
    d.child.kill('SIGTERM')
    await d.exited
    await waitUntil('the daemon to exit', () => !alive(d.info.pid), 30_000)
  }, 120_000)

  it('without its own Node (installed with --omit=optional), shoal on a Node 20 says so in one line, exit 2', async () => {
    const bare = join(work, 'bare')
    mkdirSync(join(bare, 'bin'), { recursive: true })
    mkdirSync(join(bare, 'dist'))
    copyFileSync(join(ROOT, 'bin', 'shoal'), join(bare, 'bin', 'shoal'))
    writeFileSync(join(bare, 'dist', 'main.js'), '')
    const system = (await run('node', ['-p', 'process.versions.node'], { env: { PATH: SYSTEM_PATH } })).stdout
    if (Number(system.split('.')[0]) >= 22) return // this machine's own Node would do
    const r = await run(join(bare, 'bin', 'shoal'), ['--version'], { env: { PATH: SYSTEM_PATH } }).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => err
    )
    expect(r.code).toBe(2)
    expect(r.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^shoal: node: Node\.js 22 or later is needed/)
    ])
  })

  it('the systemd unit passes systemd-analyze verify', async (ctx) => {
    const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find(existsSync)
    if (analyze === undefined) return ctx.skip()
    // Verify checks that ExecStart's program exists: point it at this checkout's bin.
    const unit = readFileSync(join(ROOT, 'packaging', 'shoal.service'), 'utf8').replace(
      '/usr/local/bin/shoal',
      join(ROOT, 'bin', 'shoal')
    )
    expect(unit).toContain(`ExecStart=${join(ROOT, 'bin', 'shoal')} daemon`)
    const file = join(work, 'shoal.service')
    writeFileSync(file, unit)
    const { stderr } = await run(analyze, ['verify', file]).catch((err: { stderr: string; code: number }) => {
      throw new Error(`systemd-analyze verify failed (${err.code}): ${err.stderr}`)
    })
    // Warnings about this machine (no systemd running, no user "shoal") are not the unit's; any
    // line naming the unit's own file is.
    const own = stderr.split('\n').filter((l) => l.includes('shoal.service'))
    expect(own).toEqual([])
  })

  it('the container recipe installs the packed tarball without dev tools, runs as a user, and stops on SIGTERM', () => {
    const recipe = readFileSync(join(ROOT, 'packaging', 'Containerfile'), 'utf8')
    const lines = recipe
      .replace(/\\\n/g, ' ')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    const instr = (name: string) => lines.filter((l) => l.startsWith(`${name} `))
    expect(instr('FROM')).toHaveLength(1)
    expect(instr('RUN').join(' ')).toMatch(/npm install -g --omit=dev .*shoal-\*\.tgz/)
    expect(instr('USER')).toEqual(['USER shoal'])
    expect(instr('STOPSIGNAL')).toEqual(['STOPSIGNAL SIGTERM'])
    expect(instr('HEALTHCHECK')[0]).toContain('/v1/health')
    expect(instr('ENTRYPOINT')).toEqual(['ENTRYPOINT ["shoal"]'])
    // Exec form (JSON arrays) for what runs: signals reach the daemon, not a shell.
    for (const l of [...instr('ENTRYPOINT'), ...instr('CMD')])
      expect(() => JSON.parse(l.slice(l.indexOf(' ') + 1))).not.toThrow()
    for (const l of instr('COPY')) {
      const src = l.split(/\s+/)[1] as string
      if (!src.includes('*')) expect(existsSync(join(ROOT, src)), src).toBe(true)
    }
  })
})
