import { existsSync, mkdtempSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, sleep, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import {
  apiError,
  client,
  health,
  job,
  reapPidDir,
  submit,
  TEST_CONFIG,
  waitMeshReady,
  waitState
} from './helpers.ts'

/** Every output a blob, collected as soon as nothing references it; no compaction on its own. */
const CONFIG = { ...TEST_CONFIG, inlineOutputBytes: 0, blobCheckMs: 200, blobGraceMs: 0 }

/** The blob files under a data dir (content-addressed, `blobs/ab/abcd…`). */
function blobFiles(dataDir: string): string[] {
  const root = join(dataDir, 'blobs')
  if (!existsSync(root)) return []
  return readdirSync(root)
    .filter((d) => /^[0-9a-f]{2}$/.test(d))
    .flatMap((d) => readdirSync(join(root, d)))
}

/** The job is gone from this daemon: 410 JOB_DELETED for it and its parts, absent from the list. */
async function gone(api: string, id: string): Promise<void> {
  const c = client(api)
  for (const ask of [() => c.job(id), () => c.fragments(id), () => c.output(id), () => c.retry(id)]) {
    const err = await apiError(ask())
    expect([err.status, err.code]).toEqual([410, 'JOB_DELETED'])
  }
  expect((await c.jobs()).map((j) => j.id)).not.toContain(id)
}

describe('deleting a finished job', () => {
  let mesh: DaemonProcess[] = []
  let pidDir = ''
  afterEach(async () => {
    await stopAll(mesh)
    if (pidDir !== '') reapPidDir(pidDir)
    pidDir = ''
  })

  it('is refused while it runs; once it ended it is gone everywhere, also from a daemon down during the delete, and stays gone', async () => {
    pidDir = mkdtempSync(join(tmpdir(), 'shoal-delete-'))
    mesh = await startMesh({ count: 3, config: CONFIG })
    const [a, b, c] = mesh as [DaemonProcess, DaemonProcess, DaemonProcess]
    await waitMeshReady(mesh.map((d) => d.api))

    // A running job cannot be deleted: cancel it first.
    const running = await submit(a.api, { task: 'long', items: ['x'], env: { PID_DIR: pidDir } })
    await waitState(a.api, running.id, 'RUNNING')
    const busy = await apiError(client(b.api).deleteJob(running.id))
    expect([busy.status, busy.code, busy.message]).toEqual([
      409,
      'JOB_NOT_FINISHED',
      expect.stringMatching(/is RUNNING: .*cancel it first/)
    ])
    await client(a.api).cancel(running.id)
    await waitState(b.api, running.id, 'CANCELLED')
    expect((await client(b.api).deleteJob(running.id)).state).toBe('CANCELLED')

    const items = Array.from({ length: 6 }, (_, i) => `del-${i}`)
    const j = await submit(a.api, { task: 'echo', items, fragmentSize: 1, idempotencyKey: 'del-1' })
    await waitState(a.api, j.id, 'SUCCEEDED')
    await waitState(c.api, j.id, 'SUCCEEDED')
    await waitUntil('its output blobs, on every daemon', async () =>
      mesh.every((d) => blobFiles(d.dataDir).length > 0)
    )

    // c is down, holding the job's fragments and blobs, while a deletes it.
    c.kill('SIGKILL')
    await c.waitExit()
    const was = await client(a.api).deleteJob(j.id)
    expect([was.id, was.state]).toEqual([j.id, 'SUCCEEDED'])
    // Deleting it again answers the same.
    expect((await client(b.api).deleteJob(j.id)).state).toBe('SUCCEEDED')
    for (const d of [a, b]) {
      await waitUntil(
        `the delete on ${d.name}`,
        async () => (await apiError(job(d.api, j.id))).status === 410
      )
      await gone(d.api, j.id)
      await gone(d.api, running.id)
    }
    // Its idempotency key is spent: a new job under it would be absorbed by the tombstone.
    const again = await apiError(
      client(b.api).submit({ task: 'echo', items, fragmentSize: 1, idempotencyKey: 'del-1' })
    )
    expect([again.status, again.code, again.message]).toEqual([
      410,
      'JOB_DELETED',
      expect.stringMatching(/idempotencyKey/)
    ])

    // c comes back with its old registers: it learns the delete, and brings nothing back.
    await c.start()
    await waitUntil('c to learn the delete', async () => (await apiError(job(c.api, j.id))).status === 410)
    await waitUntil('equal state digests', async () => {
      const hs = await Promise.all(mesh.map((d) => health(d.api)))
      return hs.every((h) => h.stateDigest === hs[0]?.stateDigest)
    })
    await sleep(1500) // a few anti-entropy rounds
    for (const d of mesh) {
      await gone(d.api, j.id)
      await gone(d.api, running.id)
    }
    await waitUntil(
      'no blob left anywhere',
      async () => mesh.every((d) => blobFiles(d.dataDir).length === 0),
      20_000
    )

    // The tombstone is on disk: a restarted daemon still knows the job was deleted.
    await a.stop()
    await a.start()
    await gone(a.api, j.id)
  }, 120_000)

  it('a compacted job that kept its output by reference: deleting it frees those blobs', async () => {
    mesh = await startMesh({
      count: 2,
      config: { ...CONFIG, retainFinishedMs: 500, compactedOutput: 'keep' }
    })
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    await waitMeshReady(mesh.map((d) => d.api))
    const j = await submit(a.api, { task: 'echo', items: ['k0', 'k1', 'k2'], fragmentSize: 1 })
    await waitState(a.api, j.id, 'SUCCEEDED')
    await waitUntil('compaction on both', async () =>
      (await Promise.all(mesh.map((d) => job(d.api, j.id)))).every((v) => v.compacted === true)
    )
    // The summary still refers to the blobs: they stay.
    await sleep(1000)
    expect(blobFiles(a.dataDir).length + blobFiles(b.dataDir).length).toBeGreaterThan(0)
    expect((await client(b.api).output(j.id)).text).toBe('k0\nk1\nk2\n')
    await client(b.api).deleteJob(j.id)
    await waitUntil('no blob left', async () => mesh.every((d) => blobFiles(d.dataDir).length === 0), 20_000)
    for (const d of mesh) await gone(d.api, j.id)
  }, 60_000)
})
