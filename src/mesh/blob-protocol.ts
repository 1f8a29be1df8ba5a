import type { Stream } from '@libp2p/interface'
import * as lp from 'it-length-prefixed'
import { ShoalError } from '../core/errors.ts'
import type { BlobRef } from '../core/ports.ts'
import { checkId } from '../core/wire.ts'
import type { TransportHandlers } from './transport.ts'

/**
 * Blob protocol `/shoal/blob/1.0.0`, over length-prefixed frames; the first frame of each side
 * is a JSON header, the others are raw bytes (at most CHUNK each):
 *   get: asker → { t: 'get', sha256 };  holder → { t: 'blob', bytes } and the bytes, or { t: 'missing' }
 *   put: sender → { t: 'put', sha256, bytes, job? } and the bytes;  holder → { t: 'ok' } once durable, or { t: 'error', message }
 *        (`job`: the job whose output a runner's copy is, before its success is recorded)
 *   has: asker → { t: 'has', sha256s };  holder → { t: 'held', sha256s } (those it holds)
 * Writes wait for the stream to drain, so neither side buffers more than a few chunks; each
 * side fails a transfer that makes no progress for its idle time.
 */
export const BLOB_PROTOCOL = '/shoal/blob/1.0.0'

const CHUNK = 256 * 1024
const MAX_FRAME = CHUNK + 1024
/** A header with a list of names (has, held) may fill a frame; the others are small. */
const HEADER_BYTES = MAX_FRAME

type Header =
  | { t: 'get'; sha256: string }
  | { t: 'put'; sha256: string; bytes: number; job?: string }
  | { t: 'has'; sha256s: string[] }
  | { t: 'held'; sha256s: string[] }
  | { t: 'blob'; bytes: number }
  | { t: 'missing' }
  | { t: 'ok' }
  | { t: 'error'; message: string }

const encoder = new TextEncoder()
const decoder = new TextDecoder()

function header(frame: Uint8Array | undefined, what: string): Header {
  if (frame === undefined) throw new Error(`blob stream ended before its ${what}`)
  if (frame.byteLength > HEADER_BYTES) throw new Error(`blob ${what} too large`)
  const h = JSON.parse(decoder.decode(frame)) as Header
  if (typeof h !== 'object' || h === null || typeof h.t !== 'string') throw new Error(`bad blob ${what}`)
  if ('sha256' in h && (typeof h.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(h.sha256)))
    throw new Error('bad blob name')
  if ('bytes' in h && (!Number.isSafeInteger(h.bytes) || h.bytes < 0)) throw new Error('bad blob size')
  if ('job' in h && h.job !== undefined) checkId(h.job, 'blob job id')
  if (
    'sha256s' in h &&
    (!Array.isArray(h.sha256s) || !h.sha256s.every((x) => typeof x === 'string' && /^[0-9a-f]{64}$/.test(x)))
  )
    throw new Error('bad blob names')
  return h
}

/** Fails the stream when `touch` is not called for `ms`. */
class Idle {
  private timer: NodeJS.Timeout | undefined
  private readonly ms: number
  private readonly stream: Stream
  private readonly what: string

  constructor(stream: Stream, ms: number, what: string) {
    this.stream = stream
    this.ms = ms
    this.what = what
    this.touch()
  }

  touch(): void {
    clearTimeout(this.timer)
    this.timer = setTimeout(
      () => this.stream.abort(new Error(`${this.what} made no progress for ${this.ms} ms`)),
      this.ms
    )
  }

  stop(): void {
    clearTimeout(this.timer)
  }
}

/** The frames of a stream, as plain byte arrays. */
function frames(stream: Stream): AsyncIterator<Uint8Array> {
  const source = lp.decode(stream, { maxDataLength: MAX_FRAME })
  const it = source[Symbol.asyncIterator]()
  return {
    next: async () => {
      const r = await it.next()
      return r.done === true ? { done: true, value: undefined } : { done: false, value: r.value.subarray() }
    }
  }
}

async function send(stream: Stream, data: Uint8Array, idle?: Idle): Promise<void> {
  if (!stream.send(lp.encode.single(data))) await stream.onDrain()
  idle?.touch()
}

const sendHeader = (stream: Stream, h: Header): Promise<void> =>
  send(stream, encoder.encode(JSON.stringify(h)))

/** Send bytes in chunks of at most CHUNK; returns how many went. */
async function sendBytes(stream: Stream, source: AsyncIterable<Uint8Array>, idle: Idle): Promise<number> {
  let sent = 0
  for await (const chunk of source) {
    for (let off = 0; off < chunk.byteLength; off += CHUNK) {
      const part = chunk.subarray(off, Math.min(chunk.byteLength, off + CHUNK))
      await send(stream, part, idle)
      sent += part.byteLength
    }
  }
  return sent
}

/** `bytes` bytes from the frames; fails when the stream ends short or sends more. */
async function* receiveBytes(
  it: AsyncIterator<Uint8Array>,
  bytes: number,
  idle: Idle
): AsyncIterable<Uint8Array> {
  let got = 0
  while (got < bytes) {
    const r = await it.next()
    if (r.done === true) throw new Error(`blob stream ended after ${got} of ${bytes} bytes`)
    idle.touch()
    got += r.value.byteLength
    if (got > bytes) throw new Error('blob stream sent more bytes than announced')
    yield r.value
  }
}

/** Serve one inbound blob stream (a get or a put). */
export async function serveBlobStream(
  stream: Stream,
  handlers: TransportHandlers,
  idleMs: number
): Promise<void> {
  const idle = new Idle(stream, idleMs, 'blob transfer')
  try {
    const it = frames(stream)
    const h = header((await it.next()).value, 'request')
    if (h.t === 'get') {
      const blob = await handlers.serveBlob(h.sha256)
      if (blob === undefined) await sendHeader(stream, { t: 'missing' })
      else {
        await sendHeader(stream, { t: 'blob', bytes: blob.bytes })
        await sendBytes(stream, blob.source, idle)
      }
    } else if (h.t === 'put') {
      try {
        await handlers.receiveBlob(
          { sha256: h.sha256, bytes: h.bytes },
          receiveBytes(it, h.bytes, idle),
          h.job
        )
        await sendHeader(stream, { t: 'ok' })
      } catch (err) {
        await sendHeader(stream, { t: 'error', message: String((err as Error).message).slice(0, 512) })
      }
    } else if (h.t === 'has') {
      await sendHeader(stream, { t: 'held', sha256s: await handlers.heldBlobs(h.sha256s) })
    } else throw new Error(`unexpected blob request ${h.t}`)
    await stream.close()
  } finally {
    idle.stop()
  }
}

/** Fetch a blob over an outbound stream (the caller checks the bytes against the name). */
export async function* fetchBlobStream(
  stream: Stream,
  sha256: string,
  idleMs: number
): AsyncIterable<Uint8Array> {
  const idle = new Idle(stream, idleMs, `fetch of blob ${sha256.slice(0, 12)}`)
  let done = false
  try {
    await sendHeader(stream, { t: 'get', sha256 })
    await stream.close()
    const it = frames(stream)
    const h = header((await it.next()).value, 'answer')
    idle.touch()
    if (h.t === 'missing') throw new ShoalError('BLOB_NOT_FOUND', `blob ${sha256} is not held there`)
    if (h.t !== 'blob') throw new Error(`unexpected blob answer ${h.t}`)
    yield* receiveBytes(it, h.bytes, idle)
    done = true
  } finally {
    idle.stop()
    if (!done) stream.abort(new Error('blob fetch ended early'))
  }
}

/** Send a blob over an outbound stream (of `job`'s output, if given); resolves once the peer says it holds it. */
export async function sendBlobStream(
  stream: Stream,
  blob: BlobRef,
  source: AsyncIterable<Uint8Array>,
  idleMs: number,
  job?: string
): Promise<void> {
  const idle = new Idle(stream, idleMs, `copy of blob ${blob.sha256.slice(0, 12)}`)
  let done = false
  try {
    await sendHeader(stream, {
      t: 'put',
      sha256: blob.sha256,
      bytes: blob.bytes,
      ...(job !== undefined ? { job } : {})
    })
    const sent = await sendBytes(stream, source, idle)
    if (sent !== blob.bytes) throw new Error(`blob ${blob.sha256} has ${sent} bytes here, not ${blob.bytes}`)
    await stream.close()
    const h = header((await frames(stream).next()).value, 'answer')
    if (h.t === 'error') throw new Error(`the peer refused the blob: ${h.message}`)
    if (h.t !== 'ok') throw new Error(`unexpected blob answer ${h.t}`)
    done = true
  } finally {
    idle.stop()
    if (!done) stream.abort(new Error('blob copy ended early'))
  }
}

/** Ask a peer which of these blobs it holds. */
export async function askHeldStream(
  stream: Stream,
  sha256s: readonly string[],
  idleMs: number
): Promise<string[]> {
  const idle = new Idle(stream, idleMs, 'blob question')
  let done = false
  try {
    await sendHeader(stream, { t: 'has', sha256s: [...sha256s] })
    await stream.close()
    const h = header((await frames(stream).next()).value, 'answer')
    if (h.t !== 'held') throw new Error(`unexpected blob answer ${h.t}`)
    done = true
    return h.sha256s
  } finally {
    idle.stop()
    if (!done) stream.abort(new Error('blob question ended early'))
  }
}
