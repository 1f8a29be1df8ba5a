import { ShoalError } from '../core/errors.ts'

/** What went wrong with the state store, as an operator needs to know it. */
export type StoreFailure = 'full' | 'locked' | 'corrupt' | 'missing' | 'read-only' | 'denied' | 'io'

/**
 * A failure of the state store, with the store's path. A full disk maps to 507 at the API
 * (`STORAGE_FULL`), anything else to 503 (`STORAGE_FAILED`).
 */
export class StoreError extends ShoalError {
  readonly failure: StoreFailure
  readonly location: string

  constructor(failure: StoreFailure, location: string, message: string, options?: { cause?: unknown }) {
    super(failure === 'full' ? 'STORAGE_FULL' : 'STORAGE_FAILED', message, options)
    this.name = 'StoreError'
    this.failure = failure
    this.location = location
  }
}

/**
 * Log a failure at error level, unless it is the state store refusing a write: the replica
 * reports the outage once (and its end), so what it refused is only a warning where it lands.
 */
export function logFailure(
  log: { error(obj: object, msg?: string): void; warn(obj: object, msg?: string): void },
  err: unknown,
  msg: string,
  fields: Record<string, unknown> = {}
): void {
  if (err instanceof StoreError) log.warn({ ...fields, failure: err.failure, err: err.message }, msg)
  else log.error({ ...fields, err }, msg)
}

/** The innermost message of an error chain (abstract-level wraps the binding's errors). */
function rootOf(err: unknown): { code?: string; message: string } {
  let e = err as { code?: string; message?: string; cause?: unknown } | undefined
  const codes: string[] = []
  while (e?.cause !== undefined && e.cause !== e) {
    if (typeof e.code === 'string') codes.push(e.code)
    e = e.cause as typeof e
  }
  const code = typeof e?.code === 'string' ? e.code : codes.at(-1)
  return { ...(code !== undefined ? { code } : {}), message: String(e?.message ?? err) }
}

/** Classify a LevelDB error raised while doing `what` on the store at `location`. */
export function storeErrorOf(err: unknown, location: string, what: 'open' | 'reopen' | 'write'): StoreError {
  if (err instanceof StoreError) return err
  const { code, message } = rootOf(err)
  const says = (re: RegExp): boolean => re.test(message) || (code !== undefined && re.test(code))
  let failure: StoreFailure = 'io'
  if (code === 'LEVEL_LOCKED') failure = 'locked'
  else if (code === 'LEVEL_CORRUPTION' || /corruption/i.test(message)) failure = 'corrupt'
  else if (says(/ENOSPC|no space left/i)) failure = 'full'
  else if (says(/EROFS|read-only file system/i)) failure = 'read-only'
  else if (says(/EACCES|EPERM|permission denied/i)) failure = 'denied'
  else if (/does not exist|create_if_missing is false/i.test(message)) failure = 'missing'
  const detail = message.replace(/\s+/g, ' ').trim()
  const text: Record<StoreFailure, string> = {
    full: `no space left on the device of the state store ${location} (${detail})`,
    locked: `the state store ${location} is in use by another process (is another daemon running on this data dir?)`,
    corrupt: `the state store ${location} is damaged (${detail})`,
    missing: `the state store ${location} is missing or was emptied, yet this data dir held state (${detail})`,
    'read-only': `the state store ${location} is on a read-only file system`,
    denied: `no permission to ${what === 'write' ? 'write' : 'open'} the state store ${location} (${detail})`,
    io: `cannot ${what} the state store ${location} (${detail})`
  }
  return new StoreError(failure, location, text[failure], { cause: err })
}
