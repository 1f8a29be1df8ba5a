import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import type { BlobRef, BlobStore, TaskRun } from '../../../src/core/ports.ts'
import { MemoryBlobStore } from '../../../src/store/index.ts'
import { CommandExecutor } from '../../../src/worker/command.ts'

/** A blob store that takes nothing for `stallMs` at the start of each put (a busy disk). */
class StallingStore implements BlobStore {
  readonly inner = new MemoryBlobStore()
  private readonly stallMs: number
  constructor(stallMs: number) {
    this.stallMs = stallMs
  }
  async put(source: AsyncIterable<Uint8Array>, expect?: string): Promise<BlobRef> {
    await new Promise((r) => setTimeout(r, this.stallMs))
    return this.inner.put(source, expect)
  }
  size(s: string) {
    return this.inner.size(s)
  }
  get(s: string) {
    return this.inner.get(s)
  }
  delete(s: string) {
    return this.inner.delete(s)
  }
  list() {
    return this.inner.list()
  }
}

const base = mkdtempSync(join(tmpdir(), 'shoal-exec-blobs-'))
afterAll(() => rmSync(base, { recursive: true, force: true }))

function run(blobs: BlobStore, command: string[], extra: Partial<TaskRun> = {}) {
  const work = mkdtempSync(join(base, 'w-'))
  mkdirSync(work, { recursive: true })
  const ex = new CommandExecutor(work, pino({ level: 'silent' }), undefined, blobs)
  return ex.run({
    taskName: 't',
    task: { command },
    command,
    env: { PATH: '/usr/bin:/bin' },
    items: [],
    lines: [],
    timeoutMs: 60_000,
    killGraceMs: 1000,
    maxOutputBytes: 1 << 30,
    inlineOutputBytes: 16 * 1024,
    ...extra
  })
}

describe('the executor with a blob store', () => {
  it('keeps every byte of a task that exits while its stdout waits for a slow store', async () => {
    // The store takes nothing for 1.5 s. Each task writes its bytes and exits; when they fit in
    // the buffers, the reading of stdout is paused with the last of them still in the pipe when
    // the task exits. Those were cut after 1 s and the short output recorded as a success. Which
    // size lands there depends on buffer sizes: try sizes around them, in 32 KiB steps. On a
    // loaded host (CI, or three copies of this file at once beside two busy loops) the pipe was
    // also cut while being read, not paused, when the reading had not finished within 1 s.
    const store = new StallingStore(1500)
    const sizes = Array.from({ length: 48 }, (_, i) => 900 * 1024 + i * 32 * 1024)
    const results = await Promise.all(sizes.map((n) => run(store, ['head', '-c', String(n), '/dev/zero'])))
    for (const [i, r] of results.entries()) {
      const n = sizes[i] as number
      expect(r, `${n} bytes`).toMatchObject({ exitCode: 0, stored: true, bytes: n })
      expect(r.sha256).toBe(createHash('sha256').update(Buffer.alloc(n)).digest('hex'))
      expect(await store.size(r.sha256)).toBe(n)
    }
  }, 60_000)

  it('keeps small stdout inline and the whole of a long stderr as a blob', async () => {
    const store = new MemoryBlobStore()
    const r = await run(store, ['sh', '-c', 'echo out; head -c 100000 /dev/zero | tr "\\0" e >&2'])
    expect(r).toMatchObject({ exitCode: 0, stored: false, stdout: 'out\n' })
    expect(r.stderrBlob?.bytes).toBe(100_000)
    expect(r.stderrTail.length).toBe(8 * 1024)
    expect([...(await collect(store))].map((b) => b.bytes)).toEqual([100_000])
  })
})

async function collect(store: BlobStore): Promise<BlobRef[]> {
  const out: BlobRef[] = []
  for await (const b of store.list()) out.push(b)
  return out
}
