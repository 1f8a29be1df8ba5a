import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DaemonProcess, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { client, fragments, job, submit, TEST_CONFIG, waitMeshReady, waitState } from './helpers.ts'

const MIB = 1024 * 1024
const BIG = 64 * MIB
/** A task that writes BIG bytes: its item, over and over (`yes` is fast). */
const BIG_TASK = { command: ['sh', '-c', `read item; yes "$item" | head -c ${BIG}`] }

/** The sha256 of what BIG_TASK writes for `item`, computed here without holding it. */
function expectedHash(items: string[]): string {
  const h = createHash('sha256')
  for (const item of items) {
    const line = Buffer.from(`${item}\n`)
    const block = Buffer.alloc(MIB - (MIB % line.length), line.toString())
    let left = BIG
    while (left > 0) {
      const part = block.subarray(0, Math.min(left, block.length))
      h.update(part)
      left -= part.length
    }
  }
  return h.digest('hex')
}

/** Resident set size of a process, bytes. */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1] ?? 0) * 1024
}

/** GET /output streamed through sha256; the answer's length and complete flag with it. */
async function hashOutput(
  api: string,
  id: string
): Promise<{ sha256: string; bytes: number; length: number }> {
  const out = await client(api, 60_000).outputStream(id)
  const h = createHash('sha256')
  let bytes = 0
  for await (const chunk of out.body) {
    h.update(chunk)
    bytes += chunk.byteLength
  }
  return { sha256: h.digest('hex'), bytes, length: out.bytes }
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

    const want = expectedHash(items)
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
