import type { Stream } from '@libp2p/interface'
import { messageStreamToDuplex } from '@libp2p/utils'
import * as lp from 'it-length-prefixed'
import { pipe } from 'it-pipe'
import type { Entry } from '../core/state.ts'
import { decodeSyncFrame, encodeMessage, LIMITS, type SyncFrame } from '../core/wire.ts'
import type { PullRequest, TransportHandlers } from './transport.ts'

/**
 * Anti-entropy protocol `/shoal/sync/1.0.0`, over length-prefixed frames:
 *   puller → { t: 'digest', jobs: { id: digest } }
 *   server → { t: 'entries', entries } … { t: 'end' }
 * The server sends every register of each job whose digest differs from the puller's (or that
 * the puller lacks). Each side pulls; a pull after connecting and one every syncIntervalMs with
 * a random peer make every daemon converge without anyone re-sending gossip.
 */
export const SYNC_PROTOCOL = '/shoal/sync/1.0.0'

/**
 * Replica push `/shoal/push/1.0.0`, used to acknowledge a job only once other daemons hold it:
 *   pusher → { t: 'entries', entries } … { t: 'end' }
 *   server → { t: 'ack' } once the registers are merged and synced to its disk.
 */
export const PUSH_PROTOCOL = '/shoal/push/1.0.0'

/** Largest number of entries in one frame; keeps frames well under the frame limit. */
const ENTRIES_PER_FRAME = 500
const FRAME_BYTES = 1024 * 1024

/** Entries as frames of bounded size, then an end frame. */
function* frames(entries: Iterable<Entry>): Generator<Uint8Array> {
  let batch: Entry[] = []
  let bytes = 0
  for (const e of entries) {
    const size = JSON.stringify(e).length
    if (batch.length > 0 && (batch.length >= ENTRIES_PER_FRAME || bytes + size > FRAME_BYTES)) {
      yield encodeMessage({ t: 'entries', entries: batch })
      batch = []
      bytes = 0
    }
    batch.push(e)
    bytes += size
  }
  if (batch.length > 0) yield encodeMessage({ t: 'entries', entries: batch })
  yield encodeMessage({ t: 'end' })
}

/** Serve one pull on an inbound stream. */
export async function serveSync(stream: Stream, serve: TransportHandlers['servePull']): Promise<void> {
  const duplex = messageStreamToDuplex(stream)
  await pipe(
    duplex,
    (src) => lp.decode(src, { maxDataLength: LIMITS.maxMessageBytes }),
    async function* (src) {
      for await (const chunk of src) {
        const frame = decodeSyncFrame(chunk.subarray())
        if (frame.t !== 'digest') throw new Error(`unexpected sync frame ${frame.t}`)
        yield* frames(
          serve(frame.only === undefined ? { jobs: frame.jobs } : { jobs: frame.jobs, only: frame.only })
        )
        return
      }
    },
    (src) => lp.encode(src),
    duplex
  )
}

/** Pull from a peer over an outbound stream: each frame of registers goes to `accept`, in order. */
export async function pullSync(
  stream: Stream,
  request: PullRequest,
  accept: (entries: readonly Entry[]) => Promise<void>
): Promise<void> {
  const duplex = messageStreamToDuplex(stream)
  const frame: SyncFrame =
    request.only === undefined
      ? { t: 'digest', jobs: request.jobs }
      : { t: 'digest', jobs: request.jobs, only: request.only }
  await pipe(
    [encodeMessage(frame)],
    (src) => lp.encode(src),
    duplex,
    (src) => lp.decode(src, { maxDataLength: LIMITS.maxMessageBytes }),
    async (src) => {
      for await (const chunk of src) {
        const frame = decodeSyncFrame(chunk.subarray())
        if (frame.t === 'end') return
        if (frame.t !== 'entries') throw new Error(`unexpected sync frame ${frame.t}`)
        await accept(frame.entries)
      }
      throw new Error('sync stream ended without an end frame')
    }
  )
}

/** Serve one push: merge, sync to disk, acknowledge. */
export async function servePush(stream: Stream, serve: TransportHandlers['servePush']): Promise<void> {
  const duplex = messageStreamToDuplex(stream)
  await pipe(
    duplex,
    (src) => lp.decode(src, { maxDataLength: LIMITS.maxMessageBytes }),
    async function* (src) {
      const entries: Entry[] = []
      for await (const chunk of src) {
        const frame = decodeSyncFrame(chunk.subarray())
        if (frame.t === 'entries') entries.push(...frame.entries)
        else if (frame.t === 'end') {
          // Answer before leaving the loop: leaving it early closes the stream.
          await serve(entries)
          yield encodeMessage({ t: 'ack' })
          return
        } else throw new Error(`unexpected push frame ${frame.t}`)
      }
      throw new Error('push ended without an end frame')
    },
    (src) => lp.encode(src),
    duplex
  )
}

/** Push entries to a peer and wait for its synced acknowledgement. */
export async function pushEntries(stream: Stream, entries: readonly Entry[]): Promise<void> {
  const duplex = messageStreamToDuplex(stream)
  await pipe(
    frames(entries),
    (src) => lp.encode(src),
    duplex,
    (src) => lp.decode(src, { maxDataLength: LIMITS.maxMessageBytes }),
    async (src) => {
      for await (const chunk of src) {
        if (decodeSyncFrame(chunk.subarray()).t === 'ack') return
        throw new Error('unexpected answer to a push')
      }
      throw new Error('push stream ended without an ack')
    }
  )
}
