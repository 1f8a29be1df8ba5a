import type { FastifyError } from 'fastify'
import type { ErrorCode } from '../core/errors.ts'

/** HTTP status of each error code: the one table. */
export const STATUS: Record<ErrorCode, number> = {
  INVALID_SPEC: 400,
  INVALID_JSON: 400,
  BAD_REQUEST: 400,
  TASK_NOT_ALLOWED: 403,
  AD_HOC_NOT_ALLOWED: 403,
  UNAUTHORIZED: 401,
  RATE_LIMITED: 429,
  QUOTA_EXCEEDED: 429,
  JOB_NOT_FOUND: 404,
  SCHEDULE_NOT_FOUND: 404,
  PEER_NOT_FOUND: 404,
  PEER_UNREACHABLE: 502,
  FORBIDDEN: 403,
  JOB_FINISHED: 409,
  JOB_COMPACTED: 409,
  JOB_NOT_FINISHED: 409,
  JOB_DELETED: 410,
  NOTHING_TO_RETRY: 409,
  FRAGMENT_NOT_FOUND: 404,
  TRY_NOT_FOUND: 404,
  BLOB_NOT_FOUND: 404,
  BLOB_MISMATCH: 502,
  BLOB_UNAVAILABLE: 503,
  OUTPUT_GONE: 410,
  NOT_FOUND: 404,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  IDEMPOTENCY_CONFLICT: 422,
  UNAVAILABLE: 503,
  STORAGE_FULL: 507,
  STORAGE_FAILED: 503,
  CONFIG_INVALID: 500,
  STARTUP_FAILED: 500,
  INTERNAL: 500
}

/** Turn a fastify validation error into one line naming the field ("fragmentSize: must be >= 1"). */
export function describeValidation(err: FastifyError): string {
  const v = err.validation?.[0]
  if (v === undefined) return err.message
  const path = v.instancePath
    .split('/')
    .slice(1)
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
    .join('')
    .replace(/^\./, '')
  const params = v.params as Record<string, unknown>
  if (v.keyword === 'additionalProperties') {
    const f = String(params.additionalProperty)
    return `${path === '' ? f : `${path}.${f}`}: unknown field`
  }
  if (v.keyword === 'required') {
    const f = String(params.missingProperty)
    return `${path === '' ? f : `${path}.${f}`}: is required`
  }
  const named = (v as { propertyName?: string }).propertyName ?? (params.propertyName as string | undefined)
  if (named !== undefined) return `${path === '' ? '' : `${path}.`}${named}: is not an allowed name`
  if (v.keyword === 'not' && /^items\[\d+\]$/.test(path))
    return `${path}: a string item may not contain a newline`
  const field = path === '' ? (err.validationContext ?? 'body') : path
  return `${field}: ${v.message ?? 'is invalid'}`
}

/** Map framework errors (body parsing, limits) to our codes. */
export function classify(err: FastifyError): { status: number; code: ErrorCode; message: string } {
  if (err.validation !== undefined) {
    return { status: 400, code: 'INVALID_SPEC', message: describeValidation(err) }
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, code: 'PAYLOAD_TOO_LARGE', message: 'body: larger than the limit' }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: 'body: send application/json' }
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, code: 'INVALID_JSON', message: 'body: empty; send a JSON object' }
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { status: 400, code: 'INVALID_JSON', message: `body: not valid JSON (${err.message})` }
  }
  if (err instanceof SyntaxError || (err.statusCode === 400 && /JSON/i.test(err.message))) {
    return { status: 400, code: 'INVALID_JSON', message: `body: not valid JSON (${err.message})` }
  }
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return { status: err.statusCode, code: 'BAD_REQUEST', message: err.message }
  }
  return { status: 500, code: 'INTERNAL', message: 'internal error' }
}
