/**
 * JSON schemas of the HTTP API. No unknown fields, no type coercion: a wrong type anywhere is a
 * 400 that names the field.
 */
const envNames = { pattern: '^(?!SHOAL_)[A-Za-z_][A-Za-z0-9_]*$' }

export const jobSpecSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['task'],
  properties: {
    task: { type: 'string', minLength: 1, maxLength: 128 },
    command: {
      type: 'array',
      minItems: 1,
      maxItems: 256,
      items: { type: 'string', minLength: 1, maxLength: 4096 }
    },
    items: {
      type: 'array',
      minItems: 1,
      items: { not: { type: 'string', pattern: '[\\n\\r]' } }
    },
    range: {
      type: 'object',
      additionalProperties: false,
      required: ['start', 'end'],
      properties: {
        start: { type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991 },
        end: { type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991 }
      }
    },
    fragmentSize: { type: 'integer', minimum: 1, maximum: 100_000_000 },
    maxConcurrency: { type: 'integer', minimum: 1, maximum: 1_000_000 },
    attempts: { type: 'integer', minimum: 1, maximum: 100 },
    retryOn: { type: 'array', maxItems: 255, items: { type: 'integer', minimum: 1, maximum: 255 } },
    timeoutSeconds: { type: 'number', exclusiveMinimum: 0, maximum: 604_800 },
    priority: { type: 'integer', minimum: -1_000_000, maximum: 1_000_000 },
    idempotencyKey: { type: 'string', minLength: 1, maxLength: 256 },
    env: {
      type: 'object',
      maxProperties: 256,
      propertyNames: envNames,
      additionalProperties: { type: 'string', maxLength: 32_768 }
    },
    name: { type: 'string', maxLength: 256 },
    labels: {
      type: 'object',
      maxProperties: 64,
      propertyNames: { maxLength: 128 },
      additionalProperties: { type: 'string', maxLength: 1024 }
    },
    failFast: { type: 'boolean' },
    onFailure: { enum: ['fail', 'bisect'] }
  }
} as const

export const jobIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[\\w.:-]+$' } }
} as const

export const fragmentParams = {
  type: 'object',
  required: ['id', 'path'],
  properties: {
    id: jobIdParams.properties.id,
    path: { type: 'string', maxLength: 96, pattern: '^(0|[1-9][0-9]{0,9})(\\.[01]){0,40}$' }
  }
} as const

export const logQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { attempt: { type: 'string', pattern: '^[1-9][0-9]{0,3}$' } }
} as const

export const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    state: { enum: ['SUBMITTED', 'RUNNABLE', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'] },
    schedule: { type: 'string', minLength: 1, maxLength: 128 }
  }
} as const

const scheduleName = { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }

export const scheduleSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'cron', 'template'],
  properties: {
    name: scheduleName,
    cron: { type: 'string', minLength: 1, maxLength: 256 },
    timezone: { type: 'string', minLength: 1, maxLength: 64 },
    template: jobSpecSchema,
    overlapPolicy: { enum: ['SKIP', 'ALLOW', 'CANCEL_PREVIOUS'] },
    startingDeadlineSeconds: { type: 'integer', minimum: 1, maximum: 31_536_000 },
    paused: { type: 'boolean' }
  }
} as const

export const scheduleParams = {
  type: 'object',
  required: ['name'],
  properties: { name: scheduleName }
} as const

/** `?tenant=NAME`: an admin names another tenant's schedule (names are per tenant). */
export const scheduleQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { tenant: { type: 'string', pattern: '^[A-Za-z0-9][\\w.-]{0,63}$' } }
} as const
