import type { Stream } from '@libp2p/interface'
import { messageStreamToDuplex } from '@libp2p/utils'
import * as lp from 'it-length-prefixed'
import { pipe } from 'it-pipe'
import type { Entry } from '../core/state.ts'
import { decodeSyncFrame, encodeMessage, LIMITS, type SyncFrame } from '../core/wire.ts'
import type { Replica } from '../store/replica.ts'

/**
 * Anti-entropy protocol `/shoal/sync/1.0.0`, over length-prefixed frames:
 *   puller → { t: 'digest', jobs: { id: digest } }
 *   server → { t: 'entries', entries } … { t: 'end' }
 * The server sends every register of each job whose digest differs from the puller's (or that
 * the puller lacks). Each side pulls; a pull after connecting and one every syncIntervalMs with
 * a random peer make every daemon converge without anyone re-sending gossip.
 */
export const SYNC_PROTOCOL = '/shoal/sync/1.0.0'

/** Largest number of entries in one frame; keeps frames well under the frame limit. */
const ENTRIES_PER_FRAME = 500
const FRAME_BYTES = 1024 * 1024

async function* frames(replica: Replica, theirs: Record<string, string>): AsyncGenerator<Uint8Array> {
  let batch: Entry[] = []
  let bytes = 0
  for (const id of replica.state.jobIds()) {
    if (theirs[id] === replica.state.digest(id)) continue
    for (const e of replica.state.entriesOf(id)) {
      const size = JSON.stringify(e).length
      if (batch.length > 0 && (batch.length >= ENTRIES_PER_FRAME || bytes + size > FRAME_BYTES)) {
        yield encodeMessage({ t: 'entries', entries: batch })
        batch = []
        bytes = 0
      }
      batch.push(e)
      bytes += size
    }
  }
  if (batch.length > 0) yield encodeMessage({ t: 'entries', entries: batch })
  yield encodeMessage({ t: 'end' })
}

/** Serve one pull on an inbound stream. */
export async function serveSync(stream: Stream, replica: Replica): Promise<void> {
  const duplex = messageStreamToDuplex(stream)
  await pipe(
    duplex,
    (src) => lp.decode(src, { maxDataLength: LIMITS.maxMessageBytes }),
    async function* (src) {
      for await (const chunk of src) {
        const frame = decodeSyncFrame(chunk.subarray())
        if (frame.t !== 'digest') throw new Error(`unexpected sync frame ${frame.t}`)
        yield* frames(replica, frame.jobs)
        return
      }
    },
    (src) => lp.encode(src),
    duplex
  )
}

/** Pull from a peer over an outbound stream. Resolves with the number of registers that changed here. */
export async function pullSync(stream: Stream, replica: Replica): Promise<number> {
  const duplex = messageStreamToDuplex(stream)
  let changed = 0
  const request: SyncFrame = { t: 'digest', jobs: replica.state.digestAll() }
  await pipe(
    [encodeMessage(request)],
    (src) => lp.encode(src),
    duplex,
    (src) => lp.decode(src, { maxDataLength: LIMITS.maxMessageBytes }),
    async (src) => {
      for await (const chunk of src) {
        const frame = decodeSyncFrame(chunk.subarray())
        if (frame.t === 'end') return
        if (frame.t !== 'entries') throw new Error(`unexpected sync frame ${frame.t}`)
        changed += (await replica.apply(frame.entries, 'remote')).length
      }
      throw new Error('sync stream ended without an end frame')
    }
  )
  return changed
}
