/**
 * One error class, a stable code per failure (the API maps codes to HTTP statuses in one
 * table, api/errors.ts). Messages say what and why, naming the field at fault.
 */
export type ErrorCode =
  | 'INVALID_SPEC'
  | 'INVALID_JSON'
  | 'BAD_REQUEST'
  | 'TASK_NOT_ALLOWED'
  | 'AD_HOC_NOT_ALLOWED'
  | 'UNAUTHORIZED'
  | 'RATE_LIMITED'
  | 'QUOTA_EXCEEDED'
  | 'JOB_NOT_FOUND'
  | 'SCHEDULE_NOT_FOUND'
  | 'PEER_NOT_FOUND'
  | 'PEER_UNREACHABLE'
  | 'FORBIDDEN'
  | 'JOB_FINISHED'
  | 'JOB_COMPACTED'
  | 'JOB_NOT_FINISHED'
  | 'JOB_DELETED'
  | 'NOTHING_TO_RETRY'
  | 'FRAGMENT_NOT_FOUND'
  | 'TRY_NOT_FOUND'
  | 'BLOB_NOT_FOUND'
  | 'BLOB_MISMATCH'
  | 'BLOB_UNAVAILABLE'
  | 'OUTPUT_GONE'
  | 'NOT_FOUND'
  | 'PAYLOAD_TOO_LARGE'
  | 'IDEMPOTENCY_CONFLICT'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'UNAVAILABLE'
  | 'STORAGE_FULL'
  | 'STORAGE_FAILED'
  | 'CONFIG_INVALID'
  | 'STARTUP_FAILED'
  | 'INTERNAL'

export class ShoalError extends Error {
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ShoalError'
    this.code = code
  }
}

/** Operating-system error codes an operator can act on, in words. */
const SYSTEM_ERRORS: Record<string, string> = {
  EADDRINUSE: 'address already in use (another process holds the port)',
  EADDRNOTAVAIL: 'address not available on this host',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  EEXIST: 'exists and is not a directory',
  ENOENT: 'no such file or directory',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EMFILE: 'too many open files',
  ENOTFOUND: 'no such host'
}

/** The errno code of an error (`err.code`, or one named in its message), if any. */
export function systemErrorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && code in SYSTEM_ERRORS) return code
  const named = /\b(E[A-Z]{3,})\b/.exec(String((err as Error | null)?.message ?? err))?.[1]
  return named !== undefined && named in SYSTEM_ERRORS ? named : undefined
}

/** One short line for an operating-system error ("address already in use …"), else its message. */
export function describeSystemError(err: unknown): string {
  const code = systemErrorCode(err)
  if (code !== undefined) return SYSTEM_ERRORS[code] as string
  return (String((err as Error | null)?.message ?? err).split('\n')[0] ?? '').trim()
}
