import { createHash } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import v8 from 'node:v8'
import vm from 'node:vm'
import { afterEach, describe, expect, it } from 'vitest'
import { DiskBlobStore } from '../../../src/store/blob-disk.ts'
import { type BlobStore, MemoryBlobStore } from '../../../src/store/blobs.ts'

/** Chunks of `size` bytes each, `count` of them, made one at a time (never all in memory). */
async function* chunks(count: number, size: number, seed = 0): AsyncIterable<Uint8Array> {
  for (let i = 0; i < count; i++) yield new Uint8Array(size).fill((i + seed) % 251)
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of source) parts.push(Buffer.from(c))
  return Buffer.concat(parts)
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

async function disk(): Promise<DiskBlobStore> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-blobs-'))
  dirs.push(dir)
  const s = new DiskBlobStore(dir)
  await s.open()
  return s
}

for (const [name, make] of [
  ['memory', async (): Promise<BlobStore> => new MemoryBlobStore()],
  ['disk', disk]
] as const) {
  describe(`${name} blob store`, () => {
    it('stores bytes under their sha256 and streams them back exactly', async () => {
      const s = await make()
      const ref = await s.put(chunks(3, 1000))
      const whole = await collect(chunks(3, 1000))
      expect(ref).toEqual({ sha256: sha(whole), bytes: 3000 })
      expect(await collect(s.get(ref.sha256))).toEqual(whole)
      expect(await s.size(ref.sha256)).toBe(3000)
      // The same bytes again: one blob.
      expect(await s.put(chunks(3, 1000))).toEqual(ref)
      const listed: string[] = []
      for await (const b of s.list()) listed.push(b.sha256)
      expect(listed).toEqual([ref.sha256])
    })

    it('an empty blob is a blob', async () => {
      const s = await make()
      const ref = await s.put(chunks(0, 1))
      expect(ref).toEqual({ sha256: sha(new Uint8Array()), bytes: 0 })
      expect(await collect(s.get(ref.sha256))).toEqual(Buffer.alloc(0))
    })

    it('keeps nothing when the bytes do not match the expected hash', async () => {
      const s = await make()
      await expect(s.put(chunks(2, 10), 'f'.repeat(64))).rejects.toMatchObject({ code: 'BLOB_MISMATCH' })
      const listed: unknown[] = []
      for await (const b of s.list()) listed.push(b)
      expect(listed).toEqual([])
    })

    it('answers a missing blob with BLOB_NOT_FOUND, and refuses names that are not hashes', async () => {
      const s = await make()
      expect(await s.size('a'.repeat(64))).toBeUndefined()
      await expect(collect(s.get('a'.repeat(64)))).rejects.toMatchObject({ code: 'BLOB_NOT_FOUND' })
      await expect(collect(s.get('../../etc/passwd'))).rejects.toThrow(/not a sha256/)
      const ref = await s.put(chunks(1, 5))
      await s.delete(ref.sha256)
      await s.delete(ref.sha256)
      expect(await s.size(ref.sha256)).toBeUndefined()
    })
  })
}

describe('disk blob store', () => {
  it('streams a 64 MiB blob in and out without holding it in memory', async () => {
    const s = await disk()
    // What is still reachable, not what awaits collection: collect before each sample.
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc') as () => void
    gc()
    const before = process.memoryUsage().arrayBuffers
    let peak = 0
    let n = 0
    const sample = (): void => {
      if (++n % 8 !== 0) return
      gc()
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before)
    }
    async function* sampled(src: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
      for await (const c of src) {
        sample()
        yield c
      }
    }
    const ref = await s.put(sampled(chunks(64, 1024 * 1024, 7)))
    expect(ref.bytes).toBe(64 * 1024 * 1024)
    const hash = createHash('sha256')
    let read = 0
    for await (const c of s.get(ref.sha256)) {
      hash.update(c)
      read += c.byteLength
      sample()
    }
    expect(read).toBe(ref.bytes)
    expect(hash.digest('hex')).toBe(ref.sha256)
    // Two 1 MiB chunks and some read buffers at a time, not 64 MiB.
    expect(peak).toBeLessThan(16 * 1024 * 1024)
  })

  it('drops what a crash left half-written, and lists only whole blobs', async () => {
    const s = await disk()
    const ref = await s.put(chunks(1, 100))
    writeFileSync(join(s.root, 'tmp', 'half-written'), 'x')
    writeFileSync(join(s.root, 'not-a-blob'), 'x')
    const again = new DiskBlobStore(s.root)
    await again.open()
    expect(readdirSync(join(s.root, 'tmp'))).toEqual([])
    const listed: string[] = []
    for await (const b of again.list()) listed.push(b.sha256)
    expect(listed).toEqual([ref.sha256])
    expect(existsSync(join(s.root, ref.sha256.slice(0, 2), ref.sha256))).toBe(true)
  })
})
