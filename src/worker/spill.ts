import { PassThrough } from 'node:stream'
import type { BlobRef, BlobStore } from '../core/ports.ts'

/** Where a stream's bytes ended up: inline, or (all of them, from the first) in a blob. */
export type Spilled = { inline: Buffer } | { blob: BlobRef }

/**
 * Collects a stream's bytes in memory up to `inlineBytes`, and past that streams all of them,
 * those already collected first, into the blob store, so a large output is never held whole.
 * `write` returns false while the blob store has not caught up: the producer should pause until
 * `onDrain`. With no blob store, everything stays inline (the caller bounds it).
 */
export class Spill {
  private readonly blobs: BlobStore | undefined
  private readonly inlineBytes: number
  private chunks: Buffer[] = []
  private held = 0
  private pass: PassThrough | undefined
  private put: Promise<BlobRef> | undefined
  /** Why the blob store refused the bytes (the run should stop: its output is lost). */
  failure: Error | undefined

  constructor(blobs: BlobStore | undefined, inlineBytes: number) {
    this.blobs = blobs
    this.inlineBytes = inlineBytes
  }

  /** Bytes taken so far. */
  get bytes(): number {
    return this.held
  }

  write(chunk: Buffer): boolean {
    if (this.failure !== undefined) return true
    this.held += chunk.length
    if (this.pass === undefined) {
      this.chunks.push(chunk)
      if (this.held <= this.inlineBytes || this.blobs === undefined) return true
      this.pass = new PassThrough({ highWaterMark: 1024 * 1024 })
      this.put = this.blobs.put(this.pass)
      this.put.catch((err: unknown) => {
        this.failure = err as Error
        this.pass?.destroy()
      })
      let ok = true
      for (const c of this.chunks) ok = this.pass.write(c)
      this.chunks = []
      return ok
    }
    return this.pass.write(chunk)
  }

  /** Call `fn` once the blob store has taken what was written (at once if nothing waits). */
  onDrain(fn: () => void): void {
    if (this.pass === undefined || !this.pass.writableNeedDrain) fn()
    else {
      const go = (): void => {
        this.pass?.off('close', go)
        this.pass?.off('drain', go)
        fn()
      }
      this.pass.once('drain', go)
      this.pass.once('close', go)
    }
  }

  /** The end of the stream: the inline bytes, or the blob once it is durable. Rejects if it could not be stored. */
  async end(): Promise<Spilled> {
    if (this.pass === undefined || this.put === undefined) return { inline: Buffer.concat(this.chunks) }
    if (this.failure === undefined) this.pass.end()
    return { blob: await this.put }
  }

  /** Give up (the run failed): whatever was streamed is not kept as a result. */
  discard(): void {
    this.pass?.destroy()
    this.put?.catch(() => undefined)
  }
}
