import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import rateLimit from '@fastify/rate-limit'
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController
} from 'fastify'
import type { Logger } from 'pino'
import {
  type ByteStream,
  type ErrorBody,
  OUTPUT_COMPLETE_HEADER,
  type PartitionAnswer,
  TRY_HEADER,
  type Viewer
} from '../core/api.ts'
import { type ErrorCode, ShoalError } from '../core/errors.ts'
import { type EventId, eventId, formatEventId, parseEventId, resumeStep } from '../core/events.ts'
import type { ScheduleInput } from '../core/schedule.ts'
import type { JobSpecInput } from '../core/spec.ts'
import { isTerminalJobState, type JobState } from '../core/status.ts'
import type { Daemon } from '../daemon/daemon.ts'
import type { Frontend } from '../daemon/run.ts'
import { isDashboardPath, registerDashboard } from './dashboard.ts'
import { classify, STATUS } from './errors.ts'
import { answer, doc, ref, registerOpenApi, text } from './openapi.ts'
import {
  fragmentParams,
  jobIdParams,
  jobSpecSchema,
  listQuery,
  logQuery,
  peerParams,
  scheduleParams,
  scheduleQuery,
  scheduleSchema
} from './schemas.ts'

/** Options of the HTTP API. */
export interface ApiInit {
  /** HOST:PORT to listen on (port 0 picks one). */
  listen: string
  bodyLimitBytes: number
  /** Connection and read-time limits; Node's defaults where not given. */
  limits?: HttpLimits
  logger: Logger
}

/**
 * What one client may hold of the server. Node checks the header and request timeouts only
 * every connectionsCheckingInterval (30 s by default), so the interval is derived from them.
 * Neither timeout cuts an event stream: both end once the request has been read, and a GET
 * has no body.
 */
export interface HttpLimits {
  /** Most connections open at once; new ones beyond it are closed at once. */
  maxConnections: number
  /** Time to receive a request's headers, from the connection or the previous request. */
  headersTimeoutMs: number
  /** Time to receive a whole request, body included (408 and close beyond). */
  requestTimeoutMs: number
  /** Idle time of a keep-alive connection between requests. */
  keepAliveTimeoutMs: number
}

/** How often Node looks for connections past their header or request time. */
export function checkingIntervalMs(limits: HttpLimits): number {
  return Math.max(
    100,
    Math.min(5000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4))
  )
}

/** Split "HOST:PORT" (IPv6 in brackets). */
export function parseHostPort(s: string): { host: string; port: number } {
  const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(s)
  if (m === null) throw new ShoalError('CONFIG_INVALID', `api: must be HOST:PORT, got "${s}"`)
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port: Number(m[2]) }
}

const errorBody = (code: ErrorCode, message: string): ErrorBody => ({ error: { code, message } })

/** sha256 of a token: compared in constant time, whatever the lengths. */
const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

/** The tenant a bearer token belongs to, or undefined (constant time over every token). */
export function tenantOf(header: string | undefined, tokens: Record<string, string>): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
  const given = digest(m?.[1] ?? '')
  let found: string | undefined
  for (const [tenant, token] of Object.entries(tokens)) {
    if (timingSafeEqual(given, digest(token)) && m !== null) found ??= tenant
  }
  return found
}

declare module 'fastify' {
  interface FastifyRequest {
    tenant: string
    /** The tenant asking, and whether it sees every tenant's work. */
    viewer: Viewer
  }
}

/** Build the fastify app over a daemon. */
export async function buildApp(daemon: Daemon, init: Omit<ApiInit, 'listen'>): Promise<FastifyInstance> {
  const limits = init.limits
  const app = Fastify({
    loggerInstance: init.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: init.bodyLimitBytes,
    ...(limits !== undefined
      ? {
          // fastify sets these two on the server itself; the others go to http.createServer.
          requestTimeout: limits.requestTimeoutMs,
          keepAliveTimeout: limits.keepAliveTimeoutMs,
          http: {
            headersTimeout: limits.headersTimeoutMs,
            requestTimeout: limits.requestTimeoutMs,
            keepAliveTimeout: limits.keepAliveTimeoutMs,
            connectionsCheckingInterval: checkingIntervalMs(limits)
          }
        }
      : {}),
    ajv: {
      customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false, useDefaults: false }
    }
  })

  // Beyond this many connections Node closes each new one as soon as it is accepted.
  if (limits !== undefined) app.server.maxConnections = limits.maxConnections

  // Before any route: the document collects routes as they are registered.
  await registerOpenApi(app)

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err instanceof ShoalError) {
      const status = STATUS[err.code]
      if (status >= 500) req.log.error({ err }, 'request failed')
      return reply.code(status).send(errorBody(err.code, err.message))
    }
    const c = classify(err)
    if (c.status >= 500) req.log.error({ err, url: req.url }, 'request failed')
    return reply.code(c.status).send(errorBody(c.code, c.message))
  })
  // A body announced larger than the limit gets its 413 before a byte of it is read; the rest
  // is drained by Node, so the client reads the answer instead of a connection reset.
  app.addHook('onRequest', async (req) => {
    const length = Number(req.headers['content-length'] ?? 0)
    if (length > init.bodyLimitBytes) {
      throw new ShoalError(
        'PAYLOAD_TOO_LARGE',
        `body: ${length} bytes is larger than the limit of ${init.bodyLimitBytes}`
      )
    }
  })

  // Authentication: with tokens configured, every route but the public ones (/v1/health, the
  // API document) and the dashboard's files needs one (the page sends the token the operator
  // types in on each of its calls).
  const tokens = daemon.config.apiTokens
  app.decorateRequest('tenant', 'default')
  // Without tokens the daemon has one tenant, which sees everything; with tokens, a tenant sees
  // its own work, and every tenant's when the config marks it admin.
  app.decorateRequest('viewer', null as unknown as Viewer)
  app.addHook('onRequest', async (req, reply) => {
    if (
      Object.keys(tokens).length === 0 ||
      req.routeOptions.config.public === true ||
      isDashboardPath(req.url)
    )
      return
    const tenant = tenantOf(req.headers.authorization, tokens)
    if (tenant === undefined) {
      reply.header('www-authenticate', 'Bearer realm="shoal"')
      throw new ShoalError(
        'UNAUTHORIZED',
        'authorization: send "Authorization: Bearer TOKEN" with a token of this mesh'
      )
    }
    req.tenant = tenant
  })
  // After authentication (hooks run in order): the tenant is known.
  app.addHook('onRequest', async (req) => {
    req.viewer =
      Object.keys(tokens).length === 0
        ? { tenant: 'default', admin: true }
        : { tenant: req.tenant, admin: daemon.config.tenants[req.tenant]?.admin === true }
  })
  if (daemon.config.rateLimitPerMinute > 0) {
    await app.register(rateLimit, {
      global: true,
      max: daemon.config.rateLimitPerMinute,
      timeWindow: 60_000,
      // The dashboard's files carry no token: they count against the address that asks.
      keyGenerator: (req) =>
        Object.keys(tokens).length > 0 && !isDashboardPath(req.url) ? `t:${req.tenant}` : `ip:${req.ip}`,
      allowList: (req) => req.routeOptions.config.public === true,
      errorResponseBuilder: (_req, ctx) =>
        new ShoalError('RATE_LIMITED', `rate: more than ${ctx.max} requests a minute; retry in ${ctx.after}`)
    })
  }

  await registerDashboard(app)

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`))
  })

  app.post<{ Body: JobSpecInput }>(
    '/v1/jobs',
    {
      schema: {
        ...doc('jobs', 'submit', 'Submit a job', { 202: answer('SubmitAnswer', 'The job, accepted') }),
        body: jobSpecSchema
      }
    },
    async (req, reply) => reply.code(202).send(await daemon.jobs.submit(req.body, req.tenant))
  )

  app.get<{ Querystring: { state?: JobState; schedule?: string } }>(
    '/v1/jobs',
    {
      schema: {
        ...doc('jobs', 'jobs', 'List jobs, newest first', {
          200: { description: 'The jobs the caller may see', type: 'array', items: ref('JobSummary') }
        }),
        querystring: listQuery
      }
    },
    async (req) =>
      daemon.jobs.listJobs(
        req.query.state,
        req.query.schedule !== undefined
          ? { schedule: req.query.schedule, viewer: req.viewer }
          : { viewer: req.viewer }
      )
  )

  app.get<{ Params: { id: string } }>(
    '/v1/jobs/:id',
    {
      schema: {
        ...doc('jobs', 'job', 'One job', { 200: answer('JobSummary', 'The job') }),
        params: jobIdParams
      }
    },
    async (req) => daemon.jobs.job(req.params.id, req.viewer)
  )

  app.get<{ Params: { id: string } }>(
    '/v1/jobs/:id/fragments',
    {
      schema: {
        ...doc('jobs', 'fragments', 'A job\u2019s leaf fragments, in output order', {
          200: { description: 'Its leaf fragments', type: 'array', items: ref('Fragment') }
        }),
        params: jobIdParams
      }
    },
    async (req) => daemon.jobs.fragments(req.params.id, req.viewer)
  )

  app.get<{ Params: { id: string; path: string }; Querystring: { attempt?: string } }>(
    '/v1/jobs/:id/fragments/:path/log',
    {
      schema: {
        ...doc(
          'jobs',
          'tryLog',
          'The stderr of a fragment\u2019s last try (or of its last try of attempt N)',
          {
            200: text('Its stderr: whole where kept, else its tail', {
              [TRY_HEADER]: 'The try, as JSON: { attempt, peer, exitCode, reason }'
            })
          }
        ),
        params: fragmentParams,
        querystring: logQuery
      }
    },
    async (req, reply) => {
      const { attempt } = req.query
      const t = await daemon.jobs.tryLog(
        req.params.id,
        req.params.path,
        attempt === undefined ? undefined : Number(attempt),
        req.viewer
      )
      reply.header(
        TRY_HEADER,
        JSON.stringify({ attempt: t.attempt, peer: t.peer, exitCode: t.exitCode, reason: t.reason })
      )
      return sendBytes(reply, t)
    }
  )

  app.get<{ Params: { id: string } }>(
    '/v1/jobs/:id/output',
    {
      schema: {
        ...doc('jobs', 'output', 'The stdout of the job\u2019s succeeded fragments, in order', {
          200: text('The output, streamed, with its content-length', {
            [OUTPUT_COMPLETE_HEADER]: '"true" once every fragment succeeded, else "false"'
          })
        }),
        params: jobIdParams
      }
    },
    async (req, reply) => {
      const out = await daemon.jobs.output(req.params.id, req.viewer)
      reply.header(OUTPUT_COMPLETE_HEADER, String(out.complete))
      return sendBytes(reply, out)
    }
  )

  app.post<{ Params: { id: string } }>(
    '/v1/jobs/:id/cancel',
    {
      schema: {
        ...doc('jobs', 'cancel', 'Cancel a job everywhere', {
          200: answer('JobSummary', 'The job, cancelled')
        }),
        params: jobIdParams
      }
    },
    async (req) => daemon.jobs.cancel(req.params.id, req.viewer)
  )

  app.delete<{ Params: { id: string } }>(
    '/v1/jobs/:id',
    {
      schema: {
        ...doc('jobs', 'deleteJob', 'Delete a finished job everywhere (409 JOB_NOT_FINISHED until it ends)', {
          200: answer('JobSummary', 'The job as it was')
        }),
        params: jobIdParams
      }
    },
    async (req) => daemon.jobs.delete(req.params.id, req.viewer)
  )

  app.post<{ Params: { id: string } }>(
    '/v1/jobs/:id/retry',
    {
      schema: {
        ...doc('jobs', 'retry', 'Run the failed and cancelled fragments again', {
          200: answer('JobSummary', 'The job, running again')
        }),
        params: jobIdParams
      }
    },
    async (req) => daemon.jobs.retry(req.params.id, req.viewer)
  )

  app.get<{ Params: { id: string } }>(
    '/v1/jobs/:id/metrics',
    {
      schema: {
        ...doc('jobs', 'metrics', 'The job\u2019s task metrics over every daemon', {
          200: answer('JobMetrics', 'Its task metrics')
        }),
        params: jobIdParams
      }
    },
    async (req) => daemon.jobs.metrics(req.params.id, req.viewer)
  )

  app.get<{ Params: { id: string } }>(
    '/v1/jobs/:id/failures',
    {
      schema: {
        ...doc('jobs', 'failures', 'The fragments that failed for good', {
          200: answer('Failures', 'Its failed leaves, with their items, exit code and stderr tail')
        }),
        params: jobIdParams
      }
    },
    async (req) => ({ failures: await daemon.jobs.failures(req.params.id, req.viewer) })
  )

  app.get<{ Params: { id: string } }>(
    '/v1/jobs/:id/events',
    {
      schema: {
        ...doc('jobs', 'events', 'Follow a job (Server-Sent Events)', {
          200: {
            description:
              'An `event: job` with the job summary at once and on every change, ending after a terminal state',
            content: { 'text/event-stream': { schema: { type: 'string' } } }
          }
        }),
        params: jobIdParams
      }
    },
    async (req, reply) => {
      const id = req.params.id
      await daemon.jobs.job(id, req.viewer) // 404 before the stream starts
      streamJobEvents(daemon, id, reply.raw, req.raw, req.viewer)
      return reply.hijack()
    }
  )

  app.post<{ Body: ScheduleInput }>(
    '/v1/schedules',
    {
      schema: {
        ...doc('schedules', 'putSchedule', 'Create a schedule, or replace the one of that name', {
          200: answer('Schedule', 'The schedule, replaced'),
          201: answer('Schedule', 'The schedule, created')
        }),
        body: scheduleSchema
      }
    },
    async (req, reply) => {
      const { schedule, created } = await daemon.schedules.upsert(req.body, req.tenant)
      return reply.code(created ? 201 : 200).send(schedule)
    }
  )

  app.get(
    '/v1/schedules',
    {
      schema: doc('schedules', 'schedules', 'List schedules, by name', {
        200: {
          description: 'The schedules the caller may see',
          type: 'object',
          required: ['schedules'],
          properties: { schedules: { type: 'array', items: ref('Schedule') } }
        }
      })
    },
    async (req) => ({
      schedules: daemon.schedules.list(req.viewer.admin ? undefined : req.viewer.tenant)
    })
  )

  /**
   * Whose schedule a by-name route means: the caller's tenant's, or with `?tenant=`, an admin's
   * pick; to anyone else, another tenant's schedule does not exist.
   */
  type ByName = { Params: { name: string }; Querystring: { tenant?: string } }
  const owner = (req: FastifyRequest<ByName>): string => {
    const named = req.query.tenant
    if (named === undefined || named === req.tenant) return req.tenant
    if (req.viewer.admin) return named
    throw new ShoalError('SCHEDULE_NOT_FOUND', `schedule ${req.params.name} is not known`)
  }
  const byName = (operationId: string, summary: string, answered: string) => ({
    schema: {
      ...doc('schedules', operationId, summary, { 200: answer('Schedule', answered) }),
      params: scheduleParams,
      querystring: scheduleQuery
    }
  })

  app.get<ByName>('/v1/schedules/:name', byName('schedule', 'One schedule', 'The schedule'), async (req) =>
    daemon.schedules.get(req.params.name, owner(req))
  )

  app.post<ByName>(
    '/v1/schedules/:name/pause',
    byName('pauseSchedule', 'Pause a schedule', 'The schedule, paused'),
    async (req) => daemon.schedules.pause(req.params.name, owner(req))
  )

  app.post<ByName>(
    '/v1/schedules/:name/resume',
    byName('resumeSchedule', 'Resume a schedule (ticks passed while paused do not fire)', 'The schedule'),
    async (req) => daemon.schedules.resume(req.params.name, owner(req))
  )

  app.delete<ByName>(
    '/v1/schedules/:name',
    byName('deleteSchedule', 'Delete a schedule (its jobs stay)', 'The schedule as it was'),
    async (req) => daemon.schedules.remove(req.params.name, owner(req))
  )

  app.get(
    '/v1/peers',
    {
      schema: doc('mesh', 'peers', 'The daemons of the mesh, this one included', {
        200: { description: 'Every daemon this one knows', type: 'array', items: ref('Peer') }
      })
    },
    async () => daemon.peerSummaries()
  )

  type DrainRoute = { Params: { peerId: string } }
  const drainRoute = (on: boolean) =>
    app.post<DrainRoute>(
      `/v1/peers/:peerId/${on ? 'drain' : 'undrain'}`,
      {
        schema: {
          params: peerParams,
          ...doc(
            'mesh',
            on ? 'drainPeer' : 'undrainPeer',
            on
              ? 'Drain a daemon (`self`, or a peer id): it claims nothing, hands back what it queued, finishes what runs, stays a member'
              : 'Undrain a daemon (`self`, or a peer id): it claims again',
            { 200: answer('Peer', 'The daemon, as this one sees it after the change') }
          )
        }
      },
      async (req) => {
        // An operator's act: with API tokens, only an admin tenant's token may drain.
        if (!req.viewer.admin)
          throw new ShoalError(
            'FORBIDDEN',
            `${on ? 'drain' : 'undrain'}: needs an admin token (tenants.NAME.admin)`
          )
        return daemon.drainPeer(req.params.peerId, on)
      }
    )
  drainRoute(true)
  drainRoute(false)

  app.get(
    '/v1/tasks',
    {
      schema: doc('mesh', 'tasks', 'The tasks the live daemons offer, and which run ad-hoc commands', {
        200: answer('Tasks', 'Each task with the daemons that run it')
      })
    },
    async () => daemon.tasks()
  )

  app.get(
    '/v1/health',
    {
      config: { public: true },
      schema: doc('mesh', 'health', 'This daemon\u2019s health (no token needed)', {
        200: answer('Health', 'Its health')
      })
    },
    async () => daemon.health()
  )

  if (daemon.config.testHooks) {
    // Test-only: cut this daemon off from the given peers (chaos runs). Off by default.
    app.post<{ Body: { block: string[] } }>(
      '/v1/_test/partition',
      {
        schema: {
          ...doc('test', 'partition', 'Test-only: cut this daemon off from the given peers ([] heals)', {
            200: {
              description: 'The peers now blocked',
              type: 'object',
              required: ['blocked'],
              properties: { blocked: { type: 'array', items: { type: 'string' } } }
            }
          }),
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['block'],
            properties: {
              block: { type: 'array', maxItems: 1000, items: { type: 'string', maxLength: 128 } }
            }
          }
        }
      },
      async (req): Promise<PartitionAnswer> => {
        await daemon.partition(req.body.block)
        return { blocked: req.body.block }
      }
    )
  }

  const prometheusDoc = doc(
    'mesh',
    'prometheus',
    'Prometheus metrics of this daemon (the tenant\u2019s own series)',
    {
      200: {
        description: 'Prometheus text exposition format',
        content: { 'text/plain': { schema: { type: 'string' } } }
      }
    }
  )
  app.get('/metrics', { schema: prometheusDoc }, async (req, reply) => {
    const registry = daemon.metrics.registry
    let text = await registry.metrics()
    // Task metrics name their job (and carry the task's labels), tenant series their tenant: a
    // tenant that is not admin gets only its own.
    if (!req.viewer.admin) {
      const own = new Set(daemon.jobs.listJobs(undefined, { viewer: req.viewer }).map((j) => j.id))
      const first = (line: string, label: string): string | undefined => {
        const at = line.indexOf(`{${label}="`)
        return at < 0
          ? undefined
          : line.slice(at + label.length + 3, line.indexOf('"', at + label.length + 3))
      }
      text = text
        .split('\n')
        .filter((line) => {
          if (line.startsWith('shoal_tenant_')) {
            const tenant = first(line, 'tenant')
            return tenant === undefined || tenant === req.viewer.tenant
          }
          if (!line.startsWith('shoal_task_metric_')) return true
          const id = first(line, 'job')
          return id === undefined || own.has(id)
        })
        .join('\n')
    }
    return reply.header('content-type', registry.contentType).send(text)
  })

  return app
}

/** How long a resumed stream waits for this daemon to know as much of the job as the client. */
const RESUME_WAIT_MS = 5000

/**
 * Server-Sent Events for one job: a `job` event with the summary at once, then one on every
 * change (at most every 100 ms), a comment every 15 s to keep proxies from timing out, and the
 * stream ends after the event that shows a terminal state. Each event has an id (core/events.ts);
 * a client that sends one back as `Last-Event-ID` gets neither that summary again nor an older
 * one: the daemon waits (up to RESUME_WAIT_MS) until it knows as much of the job as the client.
 */
function streamJobEvents(
  daemon: Daemon,
  id: string,
  res: ServerResponse,
  req: IncomingMessage,
  viewer: Viewer
): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no'
  })
  // Browsers reconnect after this long (and send the last id); so does ShoalClient.events.
  res.write('retry: 1000\n\n')
  let seen: EventId | undefined = parseEventId(req.headers['last-event-id'] as string | undefined)
  const resumedAt = Date.now()
  let timer: NodeJS.Timeout | undefined
  let closed = false
  const close = (): void => {
    if (closed) return
    closed = true
    clearTimeout(timer)
    clearInterval(keepAlive)
    unsubscribe()
    res.end()
  }
  const send = (): void => {
    timer = undefined
    if (closed) return
    daemon.jobs.jobEvent(id, viewer).then(
      ({ job, order }) => {
        const data = JSON.stringify(job)
        const now = eventId(order, data)
        let step = resumeStep(seen, now)
        if (step === 'wait' && Date.now() - resumedAt >= RESUME_WAIT_MS) step = 'send'
        if (step === 'wait') {
          // Ask again soon: the state that catches up may arrive without a change of this job.
          if (timer === undefined) timer = setTimeout(send, 250)
          return
        }
        if (step === 'send') res.write(`event: job\nid: ${formatEventId(now)}\ndata: ${data}\n\n`)
        seen = now
        if (isTerminalJobState(job.state)) close()
      },
      () => close()
    )
  }
  const unsubscribe = daemon.jobs.onJobChange((changed) => {
    if (changed === id && timer === undefined && !closed) timer = setTimeout(send, 100)
  })
  const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000)
  req.on('close', close)
  send()
}

/** The HTTP API as the daemon's front end. */
export class ApiServer implements Frontend {
  private app: FastifyInstance | undefined
  private readonly init: ApiInit
  private readonly daemon: Daemon

  constructor(daemon: Daemon, init: ApiInit) {
    this.init = init
    this.daemon = daemon
  }

  async listen(): Promise<string> {
    const { host, port } = parseHostPort(this.init.listen)
    this.app = await buildApp(this.daemon, this.init)
    await this.app.listen({ host, port })
    const addr = this.app.server.address()
    if (addr === null || typeof addr === 'string') throw new Error('API did not bind a TCP port')
    const h = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
    return `http://${h}:${addr.port}`
  }

  async close(): Promise<void> {
    await this.app?.close()
  }
}

/**
 * Stream bytes as a text answer with their length. The job service has checked that a live
 * daemon holds every blob, and the first chunk is read before the answer starts, so what cannot
 * be served is an error answer (503); a holder lost later is replaced by another (see
 * OutputKeeper.read), and a stream that still fails is cut short, which the length tells.
 */
async function sendBytes(reply: FastifyReply, body: ByteStream): Promise<FastifyReply> {
  const it = body.stream[Symbol.asyncIterator]()
  const first = await it.next()
  async function* rest(): AsyncIterable<Uint8Array> {
    try {
      if (first.done === true) return
      yield first.value
      for (let r = await it.next(); r.done !== true; r = await it.next()) yield r.value
    } finally {
      // A client gone mid-way ends this generator early: end the source too (its open blob
      // file, its stream from a peer), or they stay open for good.
      await it.return?.()
    }
  }
  return reply
    .header('content-type', 'text/plain; charset=utf-8')
    .header('content-length', String(body.bytes))
    .send(Readable.from(rest(), { objectMode: false }))
}
