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
  | 'JOB_NOT_FOUND'
  | 'JOB_FINISHED'
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
