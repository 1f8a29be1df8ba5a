import { mkdtempSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, sleep, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import {
  client,
  fragments,
  health,
  job,
  lines,
  output,
  reapPidDir,
  submit,
  TEST_CONFIG,
  waitMeshReady,
  waitState
} from './helpers.ts'

const CONFIG = { ...TEST_CONFIG, retainFinishedMs: 500 }

describe('compaction of finished jobs', () => {
  let mesh: DaemonProcess[] = []
  let pidDir = ''
  afterEach(async () => {
    await stopAll(mesh)
    // Kill any task process a killed daemon left behind.
    reapPidDir(pidDir)
  })

  it('compacts a finished job to a summary everywhere, keeping its state, counts and output', async () => {
    pidDir = mkdtempSync(join(tmpdir(), 'shoal-compact-'))
    mesh = await startMesh({ count: 2, config: CONFIG })
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    const items = Array.from({ length: 10 }, (_, i) => `c${i}`)
    const j = await submit(a.api, { task: 'echo', items, fragmentSize: 3 })
    await waitState(a.api, j.id, 'SUCCEEDED')
    for (const d of [a, b]) {
      const seen = await waitUntil('compaction', async () => {
        const v = await job(d.api, j.id)
        return v.compacted === true ? v : null
      })
      expect(seen).toMatchObject({ state: 'SUCCEEDED', statusSummary: { SUCCEEDED: 4 } })
      expect(await fragments(d.api, j.id)).toEqual([])
      expect((await output(d.api, j.id)).text).toBe(lines(items))
      // Its fragments, tries and logs are gone: asking for them says so.
      for (const ask of [
        () => client(d.api).failures(j.id),
        () => client(d.api).tryLog(j.id, '0'),
        () => client(d.api).retry(j.id)
      ])
        await expect(ask()).rejects.toMatchObject({ status: 409, code: 'JOB_COMPACTED' })
    }
    await waitUntil('equal state digests', async () => {
      const [ha, hb] = await Promise.all(mesh.map((d) => health(d.api)))
      return ha?.stateDigest === hb?.stateDigest
    })
  })

  it('a daemon stopped before a job finished and back after it was compacted does not run it again', async () => {
    pidDir = mkdtempSync(join(tmpdir(), 'shoal-compact-'))
    mesh = await startMesh({ count: 3, config: CONFIG })
    const [a, , c] = mesh as [DaemonProcess, DaemonProcess, DaemonProcess]
    await waitMeshReady(mesh.map((d) => d.api))
    const items = Array.from({ length: 24 }, (_, i) => `z${i}`)
    const j = await submit(a.api, {
      task: 'slow-on',
      items,
      fragmentSize: 1,
      env: { SLOW_PEER: c.peerId, PID_DIR: pidDir }
    })
    await waitUntil('c to hold fragments', async () =>
      (await fragments(a.api, j.id)).some((f) => f.peer === c.peerId && f.state === 'RUNNING')
    )
    // c goes down holding RUNNING claims in its own store.
    c.kill('SIGKILL')
    await c.waitExit()
    await waitState(a.api, j.id, 'SUCCEEDED', 30_000)
    await waitUntil('compaction', async () => (await job(a.api, j.id)).compacted === true)
    const before = readdirSync(pidDir).length
    await c.start()
    const seen = await waitUntil('c to learn the summary', async () => {
      const v = await job(c.api, j.id)
      return v.compacted === true ? v : null
    })
    expect(seen.state).toBe('SUCCEEDED')
    await sleep(1500)
    // Nothing ran again anywhere, and everyone agrees.
    expect(readdirSync(pidDir).length).toBe(before)
    for (const d of mesh) expect((await job(d.api, j.id)).compacted).toBe(true)
    await waitUntil('equal state digests', async () => {
      const hs = await Promise.all(mesh.map((d) => health(d.api)))
      return hs.every((h) => h.stateDigest === hs[0]?.stateDigest)
    })
    expect((await output(c.api, j.id)).text).toBe(lines(items))
  })
})
