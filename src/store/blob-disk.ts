import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { type BlobRef, type BlobStore, blobMismatch, blobNotFound, checkBlobName } from './blobs.ts'
import { StoreError } from './errors.ts'

/**
 * Blobs on disk under `root`: `ab/abcdef…` by hash. A put streams into `tmp/`, syncs, and
 * renames into place, so a blob is either whole under its name or absent; a crash leaves at
 * most a temporary file, removed at open.
 */
export class DiskBlobStore implements BlobStore {
  readonly root: string
  private readonly tmp: string

  constructor(root: string) {
    this.root = root
    this.tmp = join(root, 'tmp')
  }

  /** Create the directories and drop what a crash left half-written. */
  async open(): Promise<void> {
    await rm(this.tmp, { recursive: true, force: true })
    await mkdir(this.tmp, { recursive: true })
  }

  private path(sha256: string): string {
    checkBlobName(sha256)
    return join(this.root, sha256.slice(0, 2), sha256)
  }

  async put(source: AsyncIterable<Uint8Array>, expect?: string): Promise<BlobRef> {
    const tmpPath = join(this.tmp, randomBytes(12).toString('hex'))
    const hash = createHash('sha256')
    let bytes = 0
    try {
      const file = await open(tmpPath, 'wx', 0o600)
      try {
        for await (const chunk of source) {
          hash.update(chunk)
          bytes += chunk.byteLength
          let off = 0
          while (off < chunk.byteLength) off += (await file.write(chunk, off)).bytesWritten
        }
        await file.sync()
      } finally {
        await file.close()
      }
      const sha256 = hash.digest('hex')
      if (expect !== undefined && expect !== sha256) throw blobMismatch(expect, sha256)
      const final = this.path(sha256)
      await mkdir(join(this.root, sha256.slice(0, 2)), { recursive: true })
      // The same bytes stored twice are one blob: keep the one already in place.
      if ((await this.size(sha256)) === undefined) await rename(tmpPath, final)
      return { sha256, bytes }
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOSPC' || (err as { code?: string }).code === 'EDQUOT')
        throw new StoreError(
          'full',
          this.root,
          `no space left on the device of the blob store ${this.root}`,
          {
            cause: err
          }
        )
      throw err
    } finally {
      await unlink(tmpPath).catch(() => undefined)
    }
  }

  async size(sha256: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(sha256))).size
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return undefined
      throw err
    }
  }

  async *get(sha256: string): AsyncIterable<Uint8Array> {
    const stream = createReadStream(this.path(sha256), { highWaterMark: 256 * 1024 })
    try {
      for await (const chunk of stream) yield chunk as Buffer
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') throw blobNotFound(sha256)
      throw err
    } finally {
      stream.destroy()
    }
  }

  async delete(sha256: string): Promise<void> {
    await unlink(this.path(sha256)).catch((err: { code?: string }) => {
      if (err.code !== 'ENOENT') throw err
    })
  }

  async *list(): AsyncIterable<BlobRef> {
    for (const dir of (await readdir(this.root)).sort()) {
      if (!/^[0-9a-f]{2}$/.test(dir)) continue
      for (const name of (await readdir(join(this.root, dir))).sort()) {
        if (!/^[0-9a-f]{64}$/.test(name) || !name.startsWith(dir)) continue
        const bytes = await this.size(name)
        if (bytes !== undefined) yield { sha256: name, bytes }
      }
    }
  }
}
