import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  type DaemonProcess,
  MAIN,
  sleep,
  startMesh,
  stopAll,
  waitUntil
} from '../../scripts/lib/local-mesh.ts'
import {
  alive,
  apiError,
  cancelAnswer,
  client,
  fragments,
  job,
  reapPidDir,
  submit,
  TEST_CONFIG,
  waitMeshReady,
  waitState
} from './helpers.ts'

const CONFIG = TEST_CONFIG

describe('cancel, events and watch', () => {
  let mesh: DaemonProcess[] = []
  let pidDir = ''
  const pids = () =>
    readdirSync(pidDir).map((f) => ({ file: f, pid: Number(readFileSync(join(pidDir, f), 'utf8')) }))

  beforeAll(async () => {
    pidDir = mkdtempSync(join(tmpdir(), 'shoal-cancel-'))
    mesh = await startMesh({ count: 3, config: CONFIG })
    await waitMeshReady(mesh.map((d) => d.api))
  })
  afterAll(async () => {
    await stopAll(mesh)
    reapPidDir(pidDir)
  })

  it('cancel stops every running process on all daemons at once, also on one that was down; none restarts', async () => {
    const [a, b, c] = mesh as [DaemonProcess, DaemonProcess, DaemonProcess]
    // 24 fragments for 12 slots: every daemon surely ranks first for some and runs 4.
    const j = await submit(a.api, {
      task: 'long',
      range: { start: 0, end: 24 },
      fragmentSize: 1,
      env: { PID_DIR: pidDir }
    })
    await waitUntil('fragments running on every daemon', async () => {
      const fs = await fragments(a.api, j.id)
      const running = fs.filter((f) => f.state === 'RUNNING')
      return new Set(running.map((f) => f.peer)).size === 3 && running.length === 12 && pids().length === 12
    })
    // c goes down before the cancel and only comes back after it.
    c.kill('SIGKILL')
    await c.waitExit()
    const t0 = Date.now()
    const res = await cancelAnswer(b.api, j.id)
    expect(res.status).toBe(200)
    expect(res.body?.state).toBe('CANCELLED')
    // a's and b's processes die within a heartbeat or two.
    const onAB = pids().filter(({ file }) => !file.includes('gone'))
    await waitUntil(
      'processes on a and b to be killed',
      async () => {
        const fs = await fragments(a.api, j.id)
        const cPaths = new Set(fs.filter((f) => f.peer === c.peerId).map((f) => f.path))
        return onAB
          .filter(({ file }) => !cPaths.has(file.split('.')[0] as string))
          .every(({ pid }) => !alive(pid))
      },
      5000,
      20
    )
    expect(Date.now() - t0).toBeLessThan(2000)
    // c comes back: it learns of the cancel by anti-entropy, kills what it left, starts nothing.
    await c.start()
    await waitState(c.api, j.id, 'CANCELLED', 15_000)
    await waitUntil('every task process to be gone', () => pids().every(({ pid }) => !alive(pid)), 10_000)
    const count = pids().length
    await sleep(1500)
    expect(pids().length).toBe(count)
    for (const d of mesh) {
      const seen = await job(d.api, j.id)
      expect(seen.state).toBe('CANCELLED')
      expect(seen.statusSummary.CANCELLED).toBe(24)
    }
    // Cancelling again is a no-op; a finished job cannot be cancelled.
    expect((await cancelAnswer(a.api, j.id)).status).toBe(200)
    const done = await submit(a.api, { task: 'echo', items: ['x'] })
    await waitState(a.api, done.id, 'SUCCEEDED')
    const late = await cancelAnswer(a.api, done.id)
    expect(late.status).toBe(409)
    expect(late.error?.code).toBe('JOB_FINISHED')
  })

  it('streams job events until the job ends', async () => {
    const [a] = mesh as [DaemonProcess]
    const j = await submit(a.api, { task: 'slow-echo', range: { start: 0, end: 6 } })
    const res = await fetch(`${a.api}/v1/jobs/${j.id}/events`)
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const text = await res.text() // ends when the job does
    const events = text
      .split('\n\n')
      .filter((e) => e.startsWith('event: job'))
      .map(
        (e) =>
          JSON.parse(e.split('data: ')[1] as string) as {
            state: string
            statusSummary: Record<string, number>
          }
      )
    expect(events.length).toBeGreaterThanOrEqual(2)
    expect(events.at(-1)?.state).toBe('SUCCEEDED')
    const done = events.map((e) => e.statusSummary.SUCCEEDED as number)
    expect([...done].sort((x, y) => x - y)).toEqual(done)
    expect((await apiError(client(a.api).events('NOPE').next())).status).toBe(404)
  })

  it('shoal watch follows a job and exits like it; shoal cancel cancels', async () => {
    const [a] = mesh as [DaemonProcess]
    const run = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(process.execPath, [MAIN, ...args, '--api', a.api], (err, stdout, stderr) =>
          resolve({ code: err === null ? 0 : (err.code as number), stdout, stderr })
        )
      )
    const ok = await submit(a.api, { task: 'slow-echo', range: { start: 0, end: 3 } })
    const watched = await run(['watch', ok.id])
    expect(watched.code).toBe(0)
    expect(watched.stderr).toMatch(/3\/3 .*SUCCEEDED/)
    const long = await submit(a.api, { task: 'long', range: { start: 0, end: 2 }, env: { PID_DIR: pidDir } })
    const watching = run(['watch', long.id])
    await sleep(500)
    const cancelled = await run(['cancel', long.id])
    expect(cancelled.code).toBe(0)
    expect(cancelled.stdout).toBe(`${long.id} CANCELLED\n`)
    expect((await watching).code).toBe(1)
  })
})
