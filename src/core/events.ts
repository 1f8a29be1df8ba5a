import { hash53 } from './canonical.ts'

/**
 * Ids of a job's Server-Sent Events, so a client that lost its stream resumes it
 * (`Last-Event-ID`) without a repeat and without missing the state it has not seen.
 *
 * An id is `ORDER-DIGEST`: ORDER is the job's order on the daemon that sent it (see
 * `JobsApi.jobEvent`: a sum over the job's registers that never decreases as a replica learns
 * more), DIGEST a hash of the summary sent. The stream only ever sends the job's latest summary,
 * so what a resumed stream owes the client is the latest summary, unless the client holds it
 * already (same digest), or the daemon it reached knows less of the job than the one it left
 * (a lower order): then the daemon waits until it knows as much before it sends.
 */
export interface EventId {
  order: number
  digest: string
}

export function eventId(order: number, data: string): EventId {
  return { order, digest: hash53(data).toString(36) }
}

export function formatEventId(id: EventId): string {
  return `${id.order}-${id.digest}`
}

/** A `Last-Event-ID` header as sent back, or undefined when absent or not one of ours. */
export function parseEventId(header: string | undefined): EventId | undefined {
  const m = /^(\d{1,16})-([0-9a-z]{1,12})$/.exec(header ?? '')
  return m === null ? undefined : { order: Number(m[1]), digest: m[2] as string }
}

/**
 * Whether a stream resumed after `seen` sends the summary whose id is `now`: 'skip' the one the
 * client holds, 'wait' while this daemon knows less of the job than the client, else 'send'.
 */
export function resumeStep(seen: EventId | undefined, now: EventId): 'send' | 'skip' | 'wait' {
  if (seen === undefined) return 'send'
  if (now.digest === seen.digest) return 'skip'
  return now.order < seen.order ? 'wait' : 'send'
}
