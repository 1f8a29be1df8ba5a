import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, watch } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { DaemonProcess, FAST, MAIN, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { LevelStore } from '../../src/store/level.ts'
import { apiError, health, output, reader, submit, submitAnswer } from './helpers.ts'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

describe('daemon lifecycle', () => {
  const d = new DaemonProcess({ name: 'life', config: FAST })
  afterAll(async () => {
    await stopAll([d])
  })

  it('a restarted daemon keeps its peer id and still knows its jobs', async () => {
    const first = await d.start()
    const res = await submitAnswer(d.api, { task: 'echo', items: ['x', 'y'] })
    expect(res.status).toBe(202)
    const id = res.body?.id as string
    await waitUntil('job done', async () => (await reader(d.api).job(id)).state === 'SUCCEEDED')
    const before = await health(d.api)
    expect(await d.stop()).toBe(0)

    const second = await d.start()
    expect(second.peerId).toBe(first.peerId)
    const job = await reader(d.api).job(id)
    expect(job.state).toBe('SUCCEEDED')
    expect((await output(d.api, id)).text).toBe('x\ny\n')
    const after = await health(d.api)
    expect(after.incarnation).toBeGreaterThan(before.incarnation)
  })

  it('a job accepted just before a kill -9 is still there after restart, and runs', async () => {
    await d.stop()
    await d.start()
    const res = await submitAnswer(d.api, { task: 'slow-echo', items: ['k'] })
    expect(res.status).toBe(202)
    const id = res.body?.id as string
    d.kill('SIGKILL')
    await d.waitExit()
    await d.start()
    await waitUntil(
      'job done after restart',
      async () => (await reader(d.api).job(id)).state === 'SUCCEEDED',
      30_000
    )
  })
})

describe('npm start', () => {
  let child: ChildProcess | undefined
  const dataDir = join(ROOT, '.shoal')
  const existed = existsSync(dataDir)
  afterAll(() => {
    if (child?.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    if (!existed) rmSync(dataDir, { recursive: true, force: true })
  })

  it('serves /v1/health with the embedded defaults', async () => {
    // A daemon.json left by a crashed daemon names a stale pid: never signal that one.
    rmSync(join(dataDir, 'daemon.json'), { force: true })
    child = spawn('npm', ['start'], { cwd: ROOT, detached: true, stdio: 'ignore' })
    const served = await waitUntil(
      'npm start to serve /v1/health on 127.0.0.1:7070',
      async () => health('http://127.0.0.1:7070'),
      60_000,
      250
    )
    expect(served.status).toBe('ok')
    expect(served.peerId).toMatch(/^12D3KooW/)
    // SIGTERM the daemon itself (not npm): it leaves gracefully, exits 0, and npm exits 0 with it.
    // The API answers a moment before daemon.json is written.
    const info = await waitUntil('daemon.json', () =>
      existsSync(join(dataDir, 'daemon.json'))
        ? (JSON.parse(readFileSync(join(dataDir, 'daemon.json'), 'utf8')) as { pid: number; peerId: string })
        : null
    )
    expect(info.peerId).toBe(served.peerId)
    process.kill(info.pid, 'SIGTERM')
    const code = await new Promise<number | null>((resolve) => child?.once('exit', resolve))
    expect(code).toBe(0)
    // Gone with the daemon: a daemon.json left behind would name a pid the system may reuse.
    expect(existsSync(join(dataDir, 'daemon.json'))).toBe(false)
  })
})

describe('a signal right after ready', () => {
  it('a SIGTERM sent the moment daemon.json appears still leaves gracefully (exit 0)', async () => {
    // The daemon once wrote daemon.json before taking SIGTERM: a supervisor that read it and
    // sent SIGTERM at once met Node's default, and the daemon died without leaving.
    for (let i = 0; i < 3; i++) {
      const dataDir = mkdtempSync(join(tmpdir(), 'shoal-ready-'))
      const child = spawn(
        process.execPath,
        [MAIN, 'daemon', '--data-dir', dataDir, '--api', '127.0.0.1:0', '--listen', '/ip4/127.0.0.1/tcp/0'],
        { stdio: 'ignore', env: { ...process.env, SHOAL_LOG_LEVEL: 'silent' } }
      )
      try {
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
        const watcher = watch(dataDir)
        await new Promise<void>((resolve) => {
          watcher.on('change', (_event, name) => {
            if (name === 'daemon.json' && existsSync(join(dataDir, 'daemon.json'))) {
              child.kill('SIGTERM')
              resolve()
            }
          })
        })
        watcher.close()
        expect(await exited).toBe(0)
      } finally {
        child.kill('SIGKILL')
        rmSync(dataDir, { recursive: true, force: true })
      }
    }
  })
})

describe('hygiene across restarts and users', () => {
  const d = new DaemonProcess({ name: 'tomb', config: FAST })
  afterAll(async () => {
    await stopAll([d])
  })

  it('a daemon whose last sync is older than the tombstones wipes its replicated state, keeping its identity', async () => {
    const first = await d.start()
    const j = await submit(d.api, { task: 'echo', items: ['old'] })
    await waitUntil('job done', async () => (await reader(d.api).job(j.id)).state === 'SUCCEEDED')
    expect(await d.stop()).toBe(0)
    // Pretend it last synced 40 days ago (tombstones live 30).
    const store = new LevelStore(join(d.dataDir, 'state'))
    await store.open()
    await store.putMeta('lastSyncAt', Date.now() - 40 * 86_400_000, { sync: true })
    await store.close()
    const again = await d.start()
    expect(again.peerId).toBe(first.peerId)
    expect((await apiError(reader(d.api).job(j.id))).status).toBe(404)
  })

  it.skipIf(process.getuid?.() !== 0)(
    'runs a task as its configured user (the daemon runs as root)',
    async () => {
      const u = new DaemonProcess({
        name: 'user',
        config: {
          ...FAST,
          tasks: { whoami: { command: ['sh', '-c', 'touch own-file && id -u'], user: 'nobody' } }
        }
      })
      try {
        await u.start()
        const j = await submit(u.api, { task: 'whoami', items: ['x'] })
        await waitUntil('job done', async () => (await reader(u.api).job(j.id)).state === 'SUCCEEDED')
        const uid = (await output(u.api, j.id)).text.trim()
        expect(uid).not.toBe('0')
        expect(uid).toBe(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim())
      } finally {
        await stopAll([u])
      }
    }
  )
})
