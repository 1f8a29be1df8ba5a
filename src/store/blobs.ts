import { createHash } from 'node:crypto'
import { ShoalError } from '../core/errors.ts'
import type { BlobRef, BlobStore } from '../core/ports.ts'

export type { BlobRef, BlobStore }

const HASH_RE = /^[0-9a-f]{64}$/

/** Check a blob name; rejects anything but 64 lowercase hex digits (names become paths). */
export function checkBlobName(sha256: string): string {
  if (!HASH_RE.test(sha256)) throw new ShoalError('INVALID_SPEC', `blob: "${sha256}" is not a sha256 in hex`)
  return sha256
}

export function blobNotFound(sha256: string): ShoalError {
  return new ShoalError('BLOB_NOT_FOUND', `blob ${sha256} is not held here`)
}

export function blobMismatch(expected: string, got: string): ShoalError {
  return new ShoalError('BLOB_MISMATCH', `blob: the bytes hash to ${got}, not ${expected}`)
}

/** Blobs in memory, for tests and the simulator. Chunks are copied in and out. */
export class MemoryBlobStore implements BlobStore {
  private readonly blobs = new Map<string, Uint8Array[]>()

  async put(source: AsyncIterable<Uint8Array>, expect?: string): Promise<BlobRef> {
    const hash = createHash('sha256')
    const chunks: Uint8Array[] = []
    let bytes = 0
    for await (const chunk of source) {
      hash.update(chunk)
      chunks.push(Uint8Array.from(chunk))
      bytes += chunk.byteLength
    }
    const sha256 = hash.digest('hex')
    if (expect !== undefined && expect !== sha256) throw blobMismatch(expect, sha256)
    if (!this.blobs.has(sha256)) this.blobs.set(sha256, chunks)
    return { sha256, bytes }
  }

  /** Whether the blob is here, at once (for the simulator's checks). */
  holds(sha256: string): boolean {
    return this.blobs.has(sha256)
  }

  async size(sha256: string): Promise<number | undefined> {
    return this.blobs.get(checkBlobName(sha256))?.reduce((n, c) => n + c.byteLength, 0)
  }

  async *get(sha256: string): AsyncIterable<Uint8Array> {
    const chunks = this.blobs.get(checkBlobName(sha256))
    if (chunks === undefined) throw blobNotFound(sha256)
    for (const c of chunks) yield Uint8Array.from(c)
  }

  async delete(sha256: string): Promise<void> {
    this.blobs.delete(checkBlobName(sha256))
  }

  async *list(): AsyncIterable<BlobRef> {
    for (const [sha256, chunks] of this.blobs)
      yield { sha256, bytes: chunks.reduce((n, c) => n + c.byteLength, 0) }
  }
}
