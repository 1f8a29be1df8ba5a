import { execFile } from 'node:child_process'
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DaemonProcess, MAIN, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import {
  alive,
  fragments,
  health,
  lines,
  output,
  reapPidDir,
  submit,
  TEST_CONFIG,
  waitMeshReady,
  waitState
} from './helpers.ts'

/** Run `shoal daemon` on a data dir and wait for it to exit (it is expected to refuse). */
function daemonOnce(dataDir: string, extra: string[] = []): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [
        MAIN,
        'daemon',
        '--data-dir',
        dataDir,
        '--api',
        '127.0.0.1:0',
        '--listen',
        '/ip4/127.0.0.1/tcp/0',
        '--log-level',
        'silent',
        ...extra
      ],
      { timeout: 30_000, killSignal: 'SIGKILL' },
      (err, _stdout, stderr) => {
        resolve({ code: child.exitCode ?? (err as { code?: number } | null)?.code ?? null, stderr })
      }
    )
  })
}

/** One line, no stack trace, naming what it must. */
function expectOneLine(stderr: string, ...mentions: Array<string | RegExp>): void {
  const text = stderr.trim()
  expect(text.split('\n')).toHaveLength(1)
  expect(text).not.toMatch(/\n\s+at /)
  for (const m of mentions) expect(text).toMatch(m)
}

/** Overwrite the middle of a file with junk. */
function garble(file: string): void {
  const size = statSync(file).size
  const fd = openSync(file, 'r+')
  writeSync(fd, Buffer.alloc(Math.min(4096, Math.max(16, size >> 1)), 0xa5), 0, undefined, size >> 2)
}

describe('start-up faults', () => {
  let daemons: DaemonProcess[] = []
  let pidDir = ''

  afterEach(async () => {
    await stopAll(daemons)
    daemons = []
    if (pidDir !== '') reapPidDir(pidDir)
    pidDir = ''
  })

  it('a second daemon on a live data dir refuses to start and leaves the running job untouched', async () => {
    pidDir = mkdtempSync(join(tmpdir(), 'shoal-pids-'))
    const d = new DaemonProcess({ name: 'live', config: TEST_CONFIG })
    daemons = [d]
    await d.start()
    const items = ['p', 'q', 'r', 's']
    const j = await submit(d.api, {
      task: 'slow-on',
      items,
      fragmentSize: 1,
      env: { SLOW_PEER: d.peerId, SLOW_SECONDS: '4', PID_DIR: pidDir }
    })
    const pids = await waitUntil('the tasks to run', () => {
      const files = readdirSync(pidDir)
      return files.length === items.length
        ? files.map((f) => Number(readFileSync(join(pidDir, f), 'utf8')))
        : null
    })
    const work = readdirSync(join(d.dataDir, 'work'))
    const second = await daemonOnce(d.dataDir)
    expect(second.code).toBe(2)
    expectOneLine(second.stderr, d.dataDir, /in use by another process/)
    // The live daemon's tasks and their work dirs are untouched.
    expect(pids.every(alive)).toBe(true)
    expect(readdirSync(join(d.dataDir, 'work'))).toEqual(work)
    await waitState(d.api, j.id, 'SUCCEEDED')
    expect((await output(d.api, j.id)).text).toBe(lines(items))
    expect((await fragments(d.api, j.id)).every((f) => f.attempt === 1 && f.statusReason === null)).toBe(true)
  })

  it('a damaged, missing or emptied store is named with its remedy; --reset-state resyncs from a peer', async () => {
    daemons = await startMesh({ count: 2, config: TEST_CONFIG })
    await waitMeshReady(daemons.map((x) => x.api))
    const [a, b] = daemons as [DaemonProcess, DaemonProcess]
    const items = Array.from({ length: 8 }, (_, i) => `x${i}`)
    const j = await submit(a.api, { task: 'echo', items, fragmentSize: 2 })
    await waitState(b.api, j.id, 'SUCCEEDED')
    // Two stops of b: the second open turns its log into a table file.
    expect(await b.stop()).toBe(0)
    await b.start()
    expect(await b.stop()).toBe(0)
    const state = join(b.dataDir, 'state')

    // A garbled table file.
    const table = readdirSync(state).find((f) => f.endsWith('.ldb'))
    expect(table).toBeDefined()
    garble(join(state, table as string))
    const damaged = await daemonOnce(b.dataDir)
    expect(damaged.code).toBe(2)
    expectOneLine(damaged.stderr, state, /damaged/, /--reset-state/)

    // A garbled manifest is damage too, not "another daemon".
    const manifest = readdirSync(state).find((f) => f.startsWith('MANIFEST-'))
    garble(join(state, manifest as string))
    const badManifest = await daemonOnce(b.dataDir)
    expect(badManifest.code).toBe(2)
    expectOneLine(badManifest.stderr, state, /--reset-state/)
    expect(badManifest.stderr).not.toMatch(/another (daemon|process)/)

    // A deleted CURRENT: LevelDB would start an empty store over the old files; it is noticed.
    rmSync(join(state, 'CURRENT'))
    const emptied = await daemonOnce(b.dataDir)
    expect(emptied.code).toBe(2)
    expectOneLine(emptied.stderr, state, /missing or was emptied/, /--reset-state/)

    // The remedy: one flag; the store is kept aside, and the daemon gets the job back from a.
    const again = new DaemonProcess({
      name: 'b',
      dataDir: b.dataDir,
      config: TEST_CONFIG,
      bootstrap: [a.addr],
      env: { SHOAL_RESET_STATE: 'true' }
    })
    daemons.push(again)
    await again.start()
    expect(again.peerId).toBe(b.peerId)
    expect(readdirSync(b.dataDir).some((f) => f.startsWith('state.damaged-'))).toBe(true)
    await waitState(again.api, j.id, 'SUCCEEDED')
    expect((await output(again.api, j.id)).text).toBe(lines(items))
  })

  it('a bootstrap daemon restarted after kill -9 re-runs no fragment of a job finished meanwhile', async () => {
    pidDir = mkdtempSync(join(tmpdir(), 'shoal-pids-'))
    daemons = await startMesh({ count: 3, config: TEST_CONFIG })
    await waitMeshReady(daemons.map((x) => x.api))
    const [boot, b, c] = daemons as [DaemonProcess, DaemonProcess, DaemonProcess]
    const items = Array.from({ length: 24 }, (_, i) => `it${i}`)
    const j = await submit(b.api, {
      task: 'slow-on',
      items,
      fragmentSize: 1,
      env: { SLOW_PEER: boot.peerId, SLOW_SECONDS: '60', PID_DIR: pidDir }
    })
    await waitUntil('the bootstrap daemon to hold running fragments', async () =>
      (await fragments(b.api, j.id)).some((f) => f.peer === boot.peerId && f.state === 'RUNNING')
    )
    boot.kill('SIGKILL')
    await boot.waitExit()
    await waitState(c.api, j.id, 'SUCCEEDED')
    const runsBefore = readdirSync(pidDir).filter((f) => f.endsWith(boot.peerId)).length
    // Back with the state of its first life (fragments RUNNING under its own old claims) and no
    // bootstrap of its own: it must hear from its peers before it claims anything.
    await boot.start()
    await waitState(boot.api, j.id, 'SUCCEEDED', 30_000)
    await waitUntil('the restarted daemon to be synced', async () => {
      return (await health(boot.api)).synced
    })
    // A few claim ticks for a wrong claim to show.
    await new Promise((r) => setTimeout(r, 1500))
    expect(readdirSync(pidDir).filter((f) => f.endsWith(boot.peerId)).length).toBe(runsBefore)
    expect((await output(boot.api, j.id)).text).toBe(lines(items))
  })
})
