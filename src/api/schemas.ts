/**
 * JSON schemas of the HTTP API. No unknown fields, no type coercion: a wrong type anywhere is a
 * 400 that names the field.
 */
import type { ErrorCode } from '../core/errors.ts'
import { STATUS } from './errors.ts'

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

/** A daemon named in a route: `self` or its peer id. */
export const peerParams = {
  type: 'object',
  required: ['peerId'],
  properties: { peerId: { type: 'string', pattern: '^(self|[1-9A-HJ-NP-Za-km-z]{1,128})$' } }
} as const

/** `?tenant=NAME`: an admin names another tenant's schedule (names are per tenant). */
export const scheduleQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { tenant: { type: 'string', pattern: '^[A-Za-z0-9][\\w.-]{0,63}$' } }
} as const

/*
 * The answers, for the API document (GET /openapi.json). Each is added to the app with its `$id`
 * and named by it in the document's components. They describe src/core/api.ts; the server
 * serializes answers with JSON.stringify, so these schemas never strip or coerce a field, and a
 * test checks the real answers against them (test/e2e/openapi.test.ts).
 */
const time = { type: 'string', format: 'date-time' } as const
const timeOrNull = { type: ['string', 'null'], format: 'date-time' } as const
const count = { type: 'integer', minimum: 0 } as const
const jobState = { enum: listQuery.properties.state.enum } as const
const fragmentStates = ['RUNNABLE', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'] as const
const statusReason = {
  description: 'Why a try ended badly; null: it succeeded.',
  enum: ['EXIT_CODE', 'TIMEOUT', 'HOST_LOST', 'CANCELLED', 'OUTPUT_TOO_LARGE', 'SPAWN_ERROR', null]
} as const
const itemRange = {
  description: 'The items it holds: positions start..end-1 in the job\u2019s items.',
  type: 'object',
  required: ['start', 'end'],
  properties: { start: count, end: count }
} as const
const exitCode = { type: ['integer', 'null'] } as const
const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const

/** A job (JobSummary). */
export const jobSummarySchema = {
  $id: 'JobSummary',
  type: 'object',
  description: 'A job: its state, its fragments by state and its times.',
  required: [
    'id',
    'tenant',
    'state',
    'task',
    'fragments',
    'items',
    'fragmentSize',
    'priority',
    'statusSummary',
    'createdAt',
    'startedAt',
    'finishedAt',
    'acceptedBy'
  ],
  properties: {
    id: { type: 'string' },
    tenant: { type: 'string', description: 'The tenant that submitted it.' },
    state: jobState,
    task: { type: 'string' },
    name: { type: 'string' },
    labels: stringMap,
    fragments: count,
    items: count,
    fragmentSize: { type: 'integer', minimum: 1 },
    priority: { type: 'integer' },
    statusSummary: {
      type: 'object',
      description: 'Leaf fragments by state.',
      required: fragmentStates,
      properties: Object.fromEntries(fragmentStates.map((s) => [s, count]))
    },
    createdAt: time,
    startedAt: timeOrNull,
    finishedAt: timeOrNull,
    acceptedBy: { type: 'string', description: 'The peer id of the daemon that accepted it.' },
    conflicts: { type: 'array', items: { type: 'string' } },
    compacted: { type: 'boolean', description: 'True once compacted to a summary.' },
    schedule: { type: 'string', description: 'The schedule that made it.' },
    scheduledFor: { ...time, description: 'The schedule tick it is for.' }
  }
} as const

/** The answer of POST /v1/jobs (SubmitAnswer). */
export const submitAnswerSchema = {
  ...jobSummarySchema,
  $id: 'SubmitAnswer',
  description: 'The job accepted, and how its acknowledgement went.',
  required: [...jobSummarySchema.required, 'replicas', 'existing'],
  properties: {
    ...jobSummarySchema.properties,
    replicas: { ...count, description: 'Copies known to hold the job when it was acknowledged.' },
    existing: { type: 'boolean', description: 'True when an idempotent submission found its job there.' }
  }
} as const

/** The body of every error answer (ErrorBody). */
export const errorSchema = {
  $id: 'Error',
  type: 'object',
  description: 'Every error answer: a stable code and one line naming the field.',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { enum: Object.keys(STATUS) as ErrorCode[], description: 'Stable; see the HTTP API section.' },
        message: { type: 'string', description: 'One line, naming the field.' }
      }
    }
  }
} as const

/** A schedule (ScheduleSummary). */
export const scheduleSummarySchema = {
  $id: 'Schedule',
  type: 'object',
  required: [
    'name',
    'tenant',
    'cron',
    'timezone',
    'template',
    'overlapPolicy',
    'startingDeadlineSeconds',
    'paused',
    'createdAt',
    'updatedAt',
    'nextTick'
  ],
  properties: {
    name: scheduleName,
    tenant: { type: 'string' },
    cron: { type: 'string' },
    timezone: { type: 'string' },
    template: { ...jobSpecSchema, description: 'The job spec each tick submits.' },
    overlapPolicy: scheduleSchema.properties.overlapPolicy,
    startingDeadlineSeconds: { type: 'integer', minimum: 1 },
    paused: { type: 'boolean' },
    createdAt: time,
    updatedAt: time,
    nextTick: { ...timeOrNull, description: 'The next tick; null while paused or when the cron has no more.' }
  }
} as const

/** A leaf fragment (FragmentRecord). */
export const fragmentSchema = {
  $id: 'Fragment',
  type: 'object',
  required: [
    'index',
    'path',
    'itemRange',
    'state',
    'statusReason',
    'attempt',
    'epoch',
    'peer',
    'exitCode',
    'startedAt',
    'finishedAt',
    'tries'
  ],
  properties: {
    index: count,
    path: fragmentParams.properties.path,
    itemRange,
    state: { enum: fragmentStates },
    statusReason,
    attempt: count,
    epoch: count,
    peer: { type: ['string', 'null'] },
    exitCode,
    startedAt: timeOrNull,
    finishedAt: timeOrNull,
    tries: {
      type: 'array',
      description: 'Its ended tries, oldest first (the last 20).',
      items: {
        type: 'object',
        required: ['round', 'attempt', 'peer', 'exitCode', 'reason', 'startedAt', 'finishedAt', 'durationMs'],
        properties: {
          round: count,
          attempt: count,
          peer: { type: 'string' },
          exitCode,
          reason: statusReason,
          startedAt: timeOrNull,
          finishedAt: timeOrNull,
          durationMs: { type: ['number', 'null'] }
        }
      }
    }
  }
} as const

/** GET /v1/jobs/:id/failures. */
export const failuresSchema = {
  $id: 'Failures',
  type: 'object',
  required: ['failures'],
  properties: {
    failures: {
      type: 'array',
      items: {
        type: 'object',
        required: ['path', 'itemRange', 'attempt', 'reason', 'exitCode', 'peer', 'log'],
        properties: {
          path: fragmentParams.properties.path,
          itemRange,
          attempt: count,
          reason: statusReason,
          exitCode,
          peer: { type: 'string', description: 'The daemon that ran its last try.' },
          log: { type: 'string', description: 'The tail of the last try\u2019s stderr.' }
        }
      }
    }
  }
} as const

/** GET /v1/jobs/:id/metrics (JobMetrics). */
export const jobMetricsSchema = {
  $id: 'JobMetrics',
  type: 'object',
  required: ['metrics', 'dropped'],
  properties: {
    metrics: {
      type: 'array',
      items: {
        type: 'object',
        required: ['task', 'name', 'labels', 'count', 'sum', 'min', 'max', 'p50', 'p90', 'p99'],
        properties: {
          task: { type: 'string' },
          name: { type: 'string' },
          labels: stringMap,
          count,
          sum: { type: 'number' },
          min: { type: 'number' },
          max: { type: 'number' },
          p50: { type: ['number', 'null'] },
          p90: { type: ['number', 'null'] },
          p99: { type: ['number', 'null'] }
        }
      }
    },
    dropped: { ...count, description: 'Values dropped (bad, over limits).' }
  }
} as const

/** A daemon of the mesh (PeerSummary). */
export const peerSchema = {
  $id: 'Peer',
  type: 'object',
  required: [
    'peerId',
    'name',
    'multiaddrs',
    'api',
    'state',
    'running',
    'capacity',
    'incarnation',
    'synced',
    'self',
    'draining'
  ],
  properties: {
    peerId: { type: 'string' },
    name: { type: 'string' },
    multiaddrs: { type: 'array', items: { type: 'string' } },
    api: { type: 'string', description: 'The base URL of its HTTP API.' },
    state: { enum: ['alive', 'suspect', 'dead', 'left'] },
    running: count,
    capacity: count,
    incarnation: count,
    synced: { type: 'boolean' },
    self: { type: 'boolean', description: 'True for the answering daemon.' },
    draining: { type: 'boolean', description: 'True while an operator has it drained: it claims nothing.' },
    version: { type: 'string', description: 'Its Shoal version (absent: a daemon too old to say).' }
  }
} as const

/** GET /v1/tasks (TasksAnswer). */
export const tasksSchema = {
  $id: 'Tasks',
  type: 'object',
  required: ['tasks', 'adHoc'],
  properties: {
    tasks: {
      type: 'array',
      description: 'Every task a live daemon runs, by name.',
      items: {
        type: 'object',
        required: ['name', 'peers'],
        properties: {
          name: { type: 'string' },
          peers: { type: 'array', items: { type: 'string' }, description: 'The live daemons that run it.' }
        }
      }
    },
    adHoc: {
      type: 'array',
      items: { type: 'string' },
      description: 'The live daemons that also run ad-hoc commands.'
    }
  }
} as const

/** GET /v1/health (Health). */
export const healthSchema = {
  $id: 'Health',
  type: 'object',
  required: [
    'status',
    'version',
    'state',
    'peerId',
    'peers',
    'connections',
    'synced',
    'incarnation',
    'stateDigest',
    'storage',
    'containment',
    'isolated'
  ],
  properties: {
    status: { enum: ['ok', 'degraded'] },
    version: { type: 'string', description: 'This daemon\u2019s Shoal version.' },
    state: { enum: ['starting', 'alive', 'leaving', 'left', 'stopped'] },
    peerId: { type: 'string' },
    peers: { ...count, description: 'Daemons this one sees alive, itself included.' },
    connections: count,
    synced: { type: 'boolean' },
    incarnation: count,
    stateDigest: { type: 'string' },
    storage: {
      type: 'object',
      required: ['writable'],
      properties: { writable: { type: 'boolean' }, failure: { type: 'string' }, message: { type: 'string' } }
    },
    containment: { enum: ['cgroup-v2', 'cgroup-v1', 'process-group'] },
    isolated: {
      type: 'boolean',
      description:
        'No connection for isolatedAfterMs while this daemon has somebody to reach (bootstrap addresses, or peers it had).'
    },
    isolatedReason: { type: 'string', description: 'Why, in one line; present only while isolated.' }
  }
} as const

/** Every answer schema, added to the app by its `$id`. */
export const answerSchemas = [
  jobSummarySchema,
  submitAnswerSchema,
  errorSchema,
  scheduleSummarySchema,
  fragmentSchema,
  failuresSchema,
  jobMetricsSchema,
  peerSchema,
  tasksSchema,
  healthSchema
] as const
