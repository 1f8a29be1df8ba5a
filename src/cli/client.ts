import type {
  ErrorBody,
  FailureRecord,
  FragmentRecord,
  Health,
  JobMetrics,
  JobOutput,
  JobSummary,
  PartitionAnswer,
  PeerSummary,
  ScheduleSummary,
  SubmitAnswer,
  TasksAnswer,
  TryLog
} from '../core/api.ts'
import { OUTPUT_COMPLETE_HEADER, TRY_HEADER } from '../core/api.ts'
import type { ScheduleInput } from '../core/schedule.ts'
import type { JobSpecInput } from '../core/spec.ts'
import { isTerminalJobState as isTerminal } from '../core/status.ts'

/** Exit codes of the CLI (CONTRACT §5). */
export const EXIT = { OK: 0, JOB_FAILED: 1, USAGE: 2, UNREACHABLE: 3 } as const

/** An error that ends the CLI with a given exit code and one line on stderr. */
export class CliError extends Error {
  readonly exitCode: number

  constructor(exitCode: number, message: string) {
    super(message)
    this.exitCode = exitCode
  }
}

/**
 * A call of the API that did not succeed: `status` is the HTTP status, or 0 when no answer came
 * (connection refused, timeout); `body` is the API's error body when the answer carried one.
 * The message is one line: "404 JOB_NOT_FOUND: job … is not known", or "cannot reach …".
 */
export class ApiError extends Error {
  readonly status: number
  readonly body: ErrorBody | undefined

  constructor(status: number, message: string, body?: ErrorBody) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.body = body
  }

  /** The API's error code ("JOB_NOT_FOUND"), or undefined without an error body. */
  get code(): string | undefined {
    return this.body?.error.code
  }

  /** The daemon was not reached, or failed on its side (5xx). */
  get unreachable(): boolean {
    return this.status === 0 || this.status >= 500
  }
}

export interface ClientOptions {
  /** A bearer token of the mesh; none when undefined or empty. */
  token?: string | undefined
  /** Time for one whole request, answer body included (an event stream too), ms. */
  timeoutMs?: number
}

/** A job's event stream silent this long (three of the daemon's 15 s keep-alives) is resumed. */
const STREAM_IDLE_MS = 45_000

const jobPath = (id: string): string => `/v1/jobs/${encodeURIComponent(id)}`
/** A schedule by name: the caller's tenant's, or (for an admin) `tenant`'s. */
const schedulePath = (name: string, tenant?: string, action = ''): string =>
  `/v1/schedules/${encodeURIComponent(name)}${action}${tenant !== undefined ? `?tenant=${encodeURIComponent(tenant)}` : ''}`

/** The typed HTTP client of the daemon API: the one the CLI, tests, bench and chaos runs use. */
export class ShoalClient {
  readonly base: string
  private readonly token: string | undefined
  private readonly timeoutMs: number

  constructor(base: string, options: ClientOptions = {}) {
    this.base = base.replace(/\/+$/, '')
    this.token = options.token === '' ? undefined : options.token
    this.timeoutMs = options.timeoutMs ?? 30_000
  }

  /** POST /v1/jobs: a spec, or its JSON text as given. */
  submit(spec: JobSpecInput | string): Promise<SubmitAnswer> {
    return this.json('POST', '/v1/jobs', typeof spec === 'string' ? spec : JSON.stringify(spec))
  }

  /**
   * GET /v1/jobs: newest first, optionally of one state (a JobState; others are the API's to
   * refuse) and of one schedule's jobs.
   */
  jobs(state?: string, filter: { schedule?: string } = {}): Promise<JobSummary[]> {
    const q = new URLSearchParams()
    if (state !== undefined) q.set('state', state)
    if (filter.schedule !== undefined) q.set('schedule', filter.schedule)
    const qs = q.toString()
    return this.json('GET', `/v1/jobs${qs !== '' ? `?${qs}` : ''}`)
  }

  /** POST /v1/schedules: create a schedule, or replace the one of that name (a body, or its JSON text). */
  putSchedule(schedule: ScheduleInput | string): Promise<ScheduleSummary> {
    return this.json(
      'POST',
      '/v1/schedules',
      typeof schedule === 'string' ? schedule : JSON.stringify(schedule)
    )
  }

  async schedules(): Promise<ScheduleSummary[]> {
    return (await this.json<{ schedules: ScheduleSummary[] }>('GET', '/v1/schedules')).schedules
  }

  /** GET /v1/schedules/:name; `tenant`: an admin's pick of another tenant's schedule. */
  schedule(name: string, tenant?: string): Promise<ScheduleSummary> {
    return this.json('GET', schedulePath(name, tenant))
  }

  pauseSchedule(name: string, tenant?: string): Promise<ScheduleSummary> {
    return this.json('POST', schedulePath(name, tenant, '/pause'))
  }

  resumeSchedule(name: string, tenant?: string): Promise<ScheduleSummary> {
    return this.json('POST', schedulePath(name, tenant, '/resume'))
  }

  deleteSchedule(name: string, tenant?: string): Promise<ScheduleSummary> {
    return this.json('DELETE', schedulePath(name, tenant))
  }

  job(id: string): Promise<JobSummary> {
    return this.json('GET', jobPath(id))
  }

  fragments(id: string): Promise<FragmentRecord[]> {
    return this.json('GET', `${jobPath(id)}/fragments`)
  }

  /** GET /v1/jobs/:id/output, read whole (for outputs that fit in memory; see outputStream). */
  async output(id: string): Promise<JobOutput> {
    const res = await this.request('GET', `${jobPath(id)}/output`)
    return { text: await res.text(), complete: res.headers.get(OUTPUT_COMPLETE_HEADER) !== 'false' }
  }

  /**
   * GET /v1/jobs/:id/output as a stream of bytes, however large: the timeout bounds the wait
   * for the answer to start, not its length. `bytes` is the whole length; a stream that ends
   * short (a daemon lost mid-way) fails.
   */
  async outputStream(
    id: string
  ): Promise<{ complete: boolean; bytes: number; body: ReadableStream<Uint8Array> }> {
    const res = await this.request('GET', `${jobPath(id)}/output`, undefined, { streaming: true })
    const body = res.body ?? new ReadableStream<Uint8Array>({ start: (c) => c.close() })
    return {
      complete: res.headers.get(OUTPUT_COMPLETE_HEADER) !== 'false',
      bytes: Number(res.headers.get('content-length') ?? 0),
      body
    }
  }

  cancel(id: string): Promise<JobSummary> {
    return this.json('POST', `${jobPath(id)}/cancel`)
  }

  /**
   * DELETE /v1/jobs/:id: delete a finished job everywhere (a tombstone); answers the job as it
   * was. Deleting it again answers the same.
   */
  deleteJob(id: string): Promise<JobSummary> {
    return this.json('DELETE', jobPath(id))
  }

  /** POST /v1/jobs/:id/retry: run the failed and cancelled fragments again. */
  retry(id: string): Promise<JobSummary> {
    return this.json('POST', `${jobPath(id)}/retry`)
  }

  /** GET /v1/jobs/:id/fragments/:path/log: the stderr tail of a fragment's last try (or of attempt N). */
  async tryLog(id: string, path: string, attempt?: number): Promise<TryLog> {
    const q = attempt === undefined ? '' : `?attempt=${attempt}`
    const res = await this.request('GET', `${jobPath(id)}/fragments/${encodeURIComponent(path)}/log${q}`)
    const meta = JSON.parse(res.headers.get(TRY_HEADER) ?? '{}') as Omit<TryLog, 'text'>
    return { ...meta, text: await res.text() }
  }

  /** GET /v1/jobs/:id/metrics: the job's task metrics over every daemon. */
  metrics(id: string): Promise<JobMetrics> {
    return this.json('GET', `${jobPath(id)}/metrics`)
  }

  /** GET /v1/jobs/:id/failures: the leaves that failed for good. */
  async failures(id: string): Promise<FailureRecord[]> {
    return (await this.json<{ failures: FailureRecord[] }>('GET', `${jobPath(id)}/failures`)).failures
  }

  peers(): Promise<PeerSummary[]> {
    return this.json('GET', '/v1/peers')
  }

  /** POST /v1/peers/:peerId/drain: `self` (the daemon asked) or a peer id. */
  drain(peerId = 'self'): Promise<PeerSummary> {
    return this.json('POST', `/v1/peers/${encodeURIComponent(peerId)}/drain`)
  }

  /** POST /v1/peers/:peerId/undrain. */
  undrain(peerId = 'self'): Promise<PeerSummary> {
    return this.json('POST', `/v1/peers/${encodeURIComponent(peerId)}/undrain`)
  }

  /** GET /v1/tasks: each task with the live daemons that run it, and those that run ad-hoc commands. */
  tasks(): Promise<TasksAnswer> {
    return this.json('GET', '/v1/tasks')
  }

  health(): Promise<Health> {
    return this.json('GET', '/v1/health')
  }

  /** Test-only (daemons with testHooks): cut the daemon off from these peers; [] heals. */
  partition(block: string[]): Promise<PartitionAnswer> {
    return this.json('POST', '/v1/_test/partition', JSON.stringify({ block }))
  }

  /**
   * The job's summaries from its Server-Sent Events, until the stream ends after a terminal
   * state. A stream that drops (a timeout, a restarting daemon, a proxy) is resumed from the last
   * event's id (`Last-Event-ID`): no summary comes twice, and the latest is not missed. After
   * `reconnects` tries in a row that reach no daemon, the last error is thrown; an API error
   * (404, 401) at once.
   */
  async *events(id: string, options: { reconnects?: number } = {}): AsyncGenerator<JobSummary> {
    const reconnects = options.reconnects ?? 5
    let lastId: string | undefined
    let failures = 0
    for (;;) {
      let ended = false
      try {
        // The request's timeout bounds the wait for the answer to start, not the stream: a job
        // may not change for hours. A stream silent past STREAM_IDLE_MS (the daemon sends a
        // comment every 15 s) is taken for dead and resumed.
        const res = await this.request('GET', `${jobPath(id)}/events`, undefined, {
          streaming: true,
          headers: lastId !== undefined ? { 'last-event-id': lastId } : {}
        })
        if (res.body === null) return
        const reader = res.body.getReader()
        let idle: NodeJS.Timeout | undefined
        const watch = (): void => {
          clearTimeout(idle)
          idle = setTimeout(() => void reader.cancel().catch(() => undefined), STREAM_IDLE_MS)
          idle.unref()
        }
        const decoder = new TextDecoder()
        let buffer = ''
        for (;;) {
          watch()
          const { done, value: chunk } = await reader.read().catch(() => ({ done: true, value: undefined }))
          if (done || chunk === undefined) break
          // Any bytes, a keep-alive comment too, show the stream alive.
          failures = 0
          buffer += decoder.decode(chunk as Uint8Array, { stream: true })
          let end = buffer.indexOf('\n\n')
          while (end >= 0) {
            const event = buffer.slice(0, end).split('\n')
            buffer = buffer.slice(end + 2)
            const data = event
              .filter((l) => l.startsWith('data: '))
              .map((l) => l.slice(6))
              .join('\n')
            const eventId = event.find((l) => l.startsWith('id: '))?.slice(4)
            if (data !== '') {
              const job = JSON.parse(data) as JobSummary
              if (eventId !== undefined) lastId = eventId
              failures = 0
              // The consumer's time is not the stream's silence.
              clearTimeout(idle)
              yield job
              ended = ended || isTerminal(job.state)
            }
            end = buffer.indexOf('\n\n')
          }
        }
        clearTimeout(idle)
        // The daemon ends the stream after the terminal state; an end before it is a drop. Drops
        // with no event between them count as failures (a stream that ends at once, again and
        // again, is not retried for ever, nor at once).
        if (ended) return
        throw new ApiError(0, `the event stream of job ${id} ended before the job did`)
      } catch (err) {
        if (ended) return
        if (err instanceof ApiError && !err.unreachable) throw err
        failures++
        if (failures > reconnects) throw err
        await new Promise((r) => setTimeout(r, Math.min(2000, 250 * 2 ** (failures - 1))))
      }
    }
  }

  /**
   * One request; throws ApiError when no answer came or the answer is an error (>= 400). The
   * timeout bounds the whole exchange, or with `streaming` only the wait for the answer to start.
   */
  async request(
    method: string,
    path: string,
    body?: string,
    options: { streaming?: boolean; headers?: Record<string, string> } = {}
  ): Promise<Response> {
    let res: Response
    const abort = new AbortController()
    // Unref'd, like AbortSignal.timeout: a pending timeout does not keep a CLI process alive.
    const timer = setTimeout(
      () => abort.abort(new Error(`timed out after ${this.timeoutMs} ms`)),
      this.timeoutMs
    )
    timer.unref()
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: {
          ...options.headers,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(this.token !== undefined ? { authorization: `Bearer ${this.token}` } : {})
        },
        body,
        signal: abort.signal
      })
    } catch (err) {
      clearTimeout(timer)
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message
      throw new ApiError(0, `cannot reach the daemon at ${this.base}: ${cause}`)
    }
    if (options.streaming === true) clearTimeout(timer)
    if (res.status >= 400) {
      const text = await res.text()
      let parsed: ErrorBody | undefined
      try {
        const v = JSON.parse(text) as Partial<ErrorBody>
        if (typeof v.error?.code === 'string' && typeof v.error.message === 'string') parsed = v as ErrorBody
      } catch {
        // not JSON: keep the text
      }
      const message = parsed !== undefined ? `${parsed.error.code}: ${parsed.error.message}` : text
      throw new ApiError(res.status, `${res.status} ${message}`, parsed)
    }
    return res
  }

  private async json<T>(method: string, path: string, body?: string): Promise<T> {
    return (await (await this.request(method, path, body)).json()) as T
  }
}
