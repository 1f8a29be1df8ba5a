import { existsSync, readdirSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DaemonProcess, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import {
  bigTask,
  client,
  fragments,
  hashOutput,
  job,
  repeatedHash,
  rss,
  submit,
  TEST_CONFIG,
  waitMeshReady,
  waitState
} from './helpers.ts'

const BIG = 64 * 1024 * 1024
const BIG_TASK = bigTask(BIG)

/** Open file descriptors of a process that point into a blob store. */
function blobFds(pid: number): number {
  let n = 0
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).includes('/blobs/')) n++
    } catch {
      // closed meanwhile
    }
  }
  return n
}

/** The blob files under a data dir (content-addressed, `blobs/ab/abcd…`). */
function blobFiles(dataDir: string): string[] {
  const root = join(dataDir, 'blobs')
  if (!existsSync(root)) return []
  return readdirSync(root)
    .filter((d) => /^[0-9a-f]{2}$/.test(d))
    .flatMap((d) => readdirSync(join(root, d)))
}

describe('outputs as blobs', () => {
  let mesh: DaemonProcess[] = []
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
  })

  it('8 fragments of 64 MiB: any daemon streams the exact bytes with flat memory, also after kill -9 of a holder', async () => {
    // a and b offer the task; c does not, so it runs none of the fragments and serves the output
    // from blobs it holds as a ranked holder or fetches from the others.
    mesh = await startMesh({
      count: 2,
      config: { ...TEST_CONFIG, capacity: 2, tasks: { ...TEST_CONFIG.tasks, big: BIG_TASK } }
    })
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    const c = new DaemonProcess({ name: 'c', config: TEST_CONFIG, bootstrap: [a.addr] })
    mesh.push(c)
    await c.start()
    await waitMeshReady(mesh.map((d) => d.api))
    const items = Array.from({ length: 8 }, (_, i) => `fragment-${i}`)
    const j = await submit(a.api, { task: 'big', items, fragmentSize: 1, timeoutSeconds: 120 })
    await waitState(c.api, j.id, 'SUCCEEDED', 240_000)
    const frags = await fragments(c.api, j.id)
    expect(frags.map((f) => f.peer)).not.toContain(c.peerId)
    // The registers carry only the hash and size: the job's records stay small everywhere.
    expect(JSON.stringify(frags).length).toBeLessThan(64 * 1024)

    const want = repeatedHash(items, BIG)
    const pids = mesh.map((d) => d.child?.pid as number)
    const before = pids.map(rss)
    const peak = [...before]
    const sampler = setInterval(() => {
      pids.forEach((pid, i) => {
        peak[i] = Math.max(peak[i] as number, rss(pid))
      })
    }, 50)
    let got: Awaited<ReturnType<typeof hashOutput>>
    try {
      got = await hashOutput(c.api, j.id)
    } finally {
      clearInterval(sampler)
    }
    expect(got).toEqual({ sha256: want, bytes: 8 * BIG, length: 8 * BIG })
    // Streamed, not held: no daemon grew by more than 100 MB while 512 MiB went through.
    peak.forEach((p, i) => {
      expect(p - (before[i] as number), `${mesh[i]?.name} RSS growth`).toBeLessThan(100 * 1000 * 1000)
    })

    // kill -9 of a daemon that ran fragments (and holds copies of others): every blob has a
    // copy elsewhere, so the output is still served in full, by c and by b.
    const victim = frags.some((f) => f.peer === a.peerId) ? a : b
    const survivor = victim === a ? b : a
    victim.kill('SIGKILL')
    await victim.waitExit()
    expect(await hashOutput(c.api, j.id)).toEqual({ sha256: want, bytes: 8 * BIG, length: 8 * BIG })
    expect((await hashOutput(survivor.api, j.id)).sha256).toBe(want)
  }, 400_000)

  it('a try that writes 100 KiB to stderr: its whole stderr is served by the log route, from any daemon', async () => {
    const noisy = { command: ['sh', '-c', 'read item; yes "err-$item" | head -c 102400 >&2; exit 3'] }
    mesh = await startMesh({ count: 2, config: { ...TEST_CONFIG, tasks: { ...TEST_CONFIG.tasks, noisy } } })
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    await waitMeshReady(mesh.map((d) => d.api))
    const j = await submit(a.api, { task: 'noisy', items: ['x'], attempts: 1 })
    await waitState(a.api, j.id, 'FAILED')
    const whole = 'err-x\n'.repeat(Math.ceil(102400 / 6)).slice(0, 102400)
    for (const d of [a, b]) {
      await waitState(d.api, j.id, 'FAILED')
      const log = await client(d.api).tryLog(j.id, '0')
      expect(log).toMatchObject({ attempt: 1, exitCode: 3, reason: 'EXIT_CODE' })
      expect(log.text.length).toBe(102400)
      expect(log.text).toBe(whole)
    }
    // The record keeps only a tail inline.
    const [f] = await fragments(b.api, j.id)
    expect(JSON.stringify(f).length).toBeLessThan(8 * 1024)
  })

  it('readers that hang up mid-stream leave no blob file open', async () => {
    mesh = await startMesh({
      count: 2,
      config: { ...TEST_CONFIG, tasks: { ...TEST_CONFIG.tasks, big: bigTask(32 * 1024 * 1024) } }
    })
    const [a] = mesh as [DaemonProcess, DaemonProcess]
    await waitMeshReady(mesh.map((d) => d.api))
    const j = await submit(a.api, { task: 'big', items: ['x'] })
    await waitState(a.api, j.id, 'SUCCEEDED')
    for (const d of mesh) {
      for (let i = 0; i < 10; i++) {
        const out = await client(d.api).outputStream(j.id)
        const reader = out.body.getReader()
        await reader.read()
        await reader.cancel()
      }
    }
    // Each one held a blob file (or a stream from the other daemon) open until it was ended.
    for (const d of mesh)
      await waitUntil(
        `${d.name} to close its blob files`,
        async () => blobFds(d.child?.pid as number) === 0,
        10_000
      )
  })

  it('an output with a blob no live daemon holds is a 503 before any byte, even after inline parts', async () => {
    const mixed = {
      command: [
        'sh',
        '-c',
        'read item; if [ "$item" = big ]; then yes big | head -c 100000; else echo "$item"; fi'
      ]
    }
    mesh = await startMesh({
      count: 2,
      // No steals: on a loaded machine a slow start could have the other daemon run (and hold)
      // the big fragment too, and then it is rightly served.
      config: {
        ...TEST_CONFIG,
        outputReplicas: 1,
        stealDelayMs: 120_000,
        // Nor the keeper's repair, which may place the one copy on the other daemon (rendezvous
        // by the blob's hash): on a loaded machine its first check (5 s) came before the kill,
        // and the output was rightly served (fresh-clone CI failed on it with a 200).
        blobCheckMs: 600_000,
        tasks: { ...TEST_CONFIG.tasks, mixed }
      }
    })
    await waitMeshReady(mesh.map((d) => d.api))
    const [a] = mesh as [DaemonProcess, DaemonProcess]
    const j = await submit(a.api, { task: 'mixed', items: ['small', 'big'], fragmentSize: 1 })
    await waitState(a.api, j.id, 'SUCCEEDED')
    const big = (await fragments(a.api, j.id)).find((f) => f.path === '1')
    expect(new Set(big?.tries.map((t) => t.peer))).toEqual(new Set([big?.peer])) // one run, one holder
    const runner = mesh.find((d) => d.peerId === big?.peer) as DaemonProcess
    const other = mesh.find((d) => d !== runner) as DaemonProcess
    // One copy only (outputReplicas 1), and its daemon is gone.
    runner.kill('SIGKILL')
    await runner.waitExit()
    const res = await fetch(`${other.api}/v1/jobs/${j.id}/output`)
    expect(res.status).toBe(503)
    const body = (await res.json()) as { error: { code: string; message: string } }
    expect(body.error.code).toBe('BLOB_UNAVAILABLE')
    expect(body.error.message).toContain(`made by ${runner.peerId}`)
    expect(body.error.message).not.toContain('\n')
  })

  it('a daemon restarted after compaction holds no orphan blobs', async () => {
    const config = {
      ...TEST_CONFIG,
      inlineOutputBytes: 0,
      retainFinishedMs: 500,
      compactedOutput: 'drop',
      blobCheckMs: 200,
      blobGraceMs: 0
    }
    mesh = await startMesh({ count: 2, config })
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    await waitMeshReady(mesh.map((d) => d.api))
    const items = Array.from({ length: 6 }, (_, i) => `orphan-${i}`)
    const j = await submit(a.api, { task: 'echo', items, fragmentSize: 1 })
    await waitState(a.api, j.id, 'SUCCEEDED')
    // Every output is a blob, on both daemons (two replicas).
    expect(blobFiles(a.dataDir).length).toBeGreaterThanOrEqual(6)
    expect(blobFiles(b.dataDir).length).toBeGreaterThanOrEqual(6)
    expect((await client(b.api).output(j.id)).text).toBe(items.map((i) => `${i}\n`).join(''))
    // b goes down with its copies and is back after the job was compacted (its output dropped):
    // it must find its blobs unreferenced and collect them.
    b.kill('SIGKILL')
    await b.waitExit()
    await waitUntil('compaction', async () => (await job(a.api, j.id)).compacted === true)
    expect(blobFiles(b.dataDir).length).toBeGreaterThanOrEqual(6)
    await b.start()
    await waitUntil('no blob left on b', async () => blobFiles(b.dataDir).length === 0, 20_000)
    await waitUntil('no blob left on a', async () => blobFiles(a.dataDir).length === 0, 20_000)
  }, 120_000)
})
