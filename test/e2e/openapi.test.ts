import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DaemonProcess, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { ApiError, ShoalClient } from '../../src/cli/client.ts'
import type { FragmentRecord, JobSummary, SubmitAnswer } from '../../src/core/api.ts'
import { type OpenApiDocument, operationOf, schemaValidator } from '../integration/openapi-doc.ts'
import { TEST_CONFIG } from './helpers.ts'

/**
 * A real daemon's answers against its own API document: every JSON answer fits the schema the
 * document gives for its route and status, with no field the document does not name, and every
 * text answer's headers are documented.
 */
describe('the API document matches what the daemon answers', () => {
  const token = 'openapi-e2e-token-0123456789'
  const d = new DaemonProcess({
    name: 'openapi',
    config: { ...TEST_CONFIG, apiTokens: { ops: token }, tenants: { ops: { admin: true } } }
  })
  let doc: OpenApiDocument
  let check: (pointer: string, value: unknown) => string | null
  let c: ShoalClient
  /** Operations whose answers were checked: "GET /v1/jobs/{id} 200". */
  const checked = new Set<string>()

  beforeAll(async () => {
    await d.start()
    c = new ShoalClient(d.api, { token })
  })
  afterAll(async () => {
    await stopAll([d])
  })

  /** The document's description of an answer to METHOD path with this status, or a failure. */
  function described(method: string, pathname: string, status: number) {
    const found = operationOf(doc, method, pathname)
    if (found === undefined) throw new Error(`${method} ${pathname} is not in the document`)
    const key = [String(status), `${String(status)[0]}XX`].find((k) => found.operation.responses[k])
    if (key === undefined) throw new Error(`${method} ${found.path}: ${status} is not documented`)
    checked.add(`${method} ${found.path} ${key}`)
    return {
      ...found,
      key,
      response: found.operation.responses[key] as { content?: Record<string, unknown> }
    }
  }

  /** Check a JSON answer against the document; returns it. */
  function fits<T>(method: string, pathname: string, status: number, body: T): T {
    const { pointer, key, response } = described(method, pathname, status)
    expect(Object.keys(response.content ?? {})).toContain('application/json')
    const errors = check(`${pointer}/responses/${key}/content/application~1json/schema`, body)
    expect(errors, `${method} ${pathname} ${status}: ${JSON.stringify(body)}`).toBeNull()
    return body
  }

  /** A call through the client, its answer (a success or the API's error) checked against the document. */
  async function call<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const pathname = path.split('?')[0] as string
    try {
      const res = await c.request(method, path, body === undefined ? undefined : JSON.stringify(body))
      return { status: res.status, body: fits(method, pathname, res.status, (await res.json()) as T) }
    } catch (err) {
      if (!(err instanceof ApiError) || err.body === undefined) throw err
      return { status: err.status, body: fits(method, pathname, err.status, err.body as T) }
    }
  }

  it('is served without a token, and everything else still needs one', async () => {
    const res = await fetch(`${d.api}/openapi.json`)
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^application\/json/)
    doc = (await res.json()) as OpenApiDocument
    expect(doc.openapi).toBe('3.1.0')
    check = schemaValidator(doc)
    const refused = await fetch(`${d.api}/v1/jobs`)
    expect(refused.status).toBe(401)
    fits('GET', '/v1/jobs', 401, await refused.json())
  })

  it('jobs: submit, list, read, fragments, metrics, failures, output, logs, events, cancel, retry, delete', async () => {
    const spec = { task: 'echo', items: ['a', 'b', 'c'], fragmentSize: 1, name: 'doc', labels: { k: 'v' } }
    const sub = await call<SubmitAnswer>('POST', '/v1/jobs', spec)
    expect(sub.status).toBe(202)
    // Every field of a submit answer and a job summary came through (none stripped).
    expect(sub.body).toMatchObject({ name: 'doc', labels: { k: 'v' }, tenant: 'ops', existing: false })
    expect(sub.body.replicas).toBeGreaterThanOrEqual(1)
    const id = sub.body.id
    await waitUntil('the job to succeed', async () => (await c.job(id)).state === 'SUCCEEDED')

    const one = await call<JobSummary>('GET', `/v1/jobs/${id}`)
    expect(one.body.finishedAt).not.toBeNull()
    const list = await call<JobSummary[]>('GET', '/v1/jobs?state=SUCCEEDED')
    expect(list.body.map((j) => j.id)).toContain(id)
    await call('GET', `/v1/jobs/${id}/fragments`)
    await waitUntil('its task metrics', async () => (await c.metrics(id)).metrics.length > 0)
    await call('GET', `/v1/jobs/${id}/metrics`)
    expect((await call('POST', `/v1/jobs/${id}/cancel`)).status).toBe(409)
    expect((await call('POST', `/v1/jobs/${id}/retry`)).status).toBe(409)

    const out = await c.request('GET', `/v1/jobs/${id}/output`)
    const outDoc = described('GET', `/v1/jobs/${id}/output`, out.status)
    expect(Object.keys(outDoc.response.content ?? {})).toEqual(['text/plain'])
    expect(Object.keys((outDoc.response as { headers?: object }).headers ?? {})).toContain(
      'x-shoal-output-complete'
    )
    expect(await out.text()).toBe('a\nb\nc\n')

    const events = await c.request('GET', `/v1/jobs/${id}/events`)
    expect(
      Object.keys(described('GET', `/v1/jobs/${id}/events`, events.status).response.content ?? {})
    ).toEqual(['text/event-stream'])
    await events.body?.cancel()

    // A failed job: its fragments, failures and a try's log carry reasons and exit codes.
    const failed = (await c.submit({ task: 'fail', items: ['x'], attempts: 1 })).id
    await waitUntil('the job to fail', async () => (await c.job(failed)).state === 'FAILED')
    const frags = await call<FragmentRecord[]>('GET', `/v1/jobs/${failed}/fragments`)
    expect(frags.body[0]).toMatchObject({ state: 'FAILED', statusReason: 'EXIT_CODE', exitCode: 3 })
    await call('GET', `/v1/jobs/${failed}/failures`)
    const path = (frags.body[0] as FragmentRecord).path
    const log = await c.request('GET', `/v1/jobs/${failed}/fragments/${path}/log`)
    const logDoc = described('GET', `/v1/jobs/${failed}/fragments/${path}/log`, log.status)
    expect(Object.keys((logDoc.response as { headers?: object }).headers ?? {})).toContain('x-shoal-try')
    await log.text()
    expect((await call<JobSummary>('POST', `/v1/jobs/${failed}/retry`)).status).toBe(200)

    // A running job, cancelled.
    const slow = (await c.submit({ task: 'long', items: ['x'], env: { PID_DIR: d.dataDir } })).id
    const cancelled = await call<JobSummary>('POST', `/v1/jobs/${slow}/cancel`)
    expect(cancelled.body.state).toBe('CANCELLED')

    // Deleted once finished: refused while it runs, gone (410) after.
    const running = (await c.submit({ task: 'long', items: ['y'], env: { PID_DIR: d.dataDir } })).id
    expect((await call('DELETE', `/v1/jobs/${running}`)).status).toBe(409)
    await c.cancel(running)
    expect((await call<JobSummary>('DELETE', `/v1/jobs/${running}`)).body.state).toBe('CANCELLED')
    expect((await call('GET', `/v1/jobs/${running}`)).status).toBe(410)

    // Refusals: each is an Error with a code and a message.
    expect((await call('GET', '/v1/jobs/nope')).status).toBe(404)
    expect((await call('POST', '/v1/jobs', { task: 'echo', items: ['a'], fragmentSize: 0 })).status).toBe(400)
    expect((await call('GET', '/v1/jobs?state=DONE')).status).toBe(400)
  })

  it('schedules: create, replace, list, read, pause, resume, delete', async () => {
    const schedule = {
      name: 'nightly',
      cron: '0 3 * * *',
      timezone: 'UTC',
      template: { task: 'echo', items: ['a'], labels: { k: 'v' } }
    }
    expect((await call('POST', '/v1/schedules', schedule)).status).toBe(201)
    expect((await call('POST', '/v1/schedules', { ...schedule, paused: true })).status).toBe(200)
    await call('GET', '/v1/schedules')
    await call('GET', '/v1/schedules/nightly')
    await call('POST', '/v1/schedules/nightly/resume')
    await call('POST', '/v1/schedules/nightly/pause?tenant=ops')
    await call('DELETE', '/v1/schedules/nightly')
    expect((await call('GET', '/v1/schedules/nightly')).status).toBe(404)
  })

  it('the mesh: peers, tasks, health, metrics; the dashboard page, without a token', async () => {
    const page = await fetch(`${d.api}/`)
    expect(page.status).toBe(200)
    expect(Object.keys(described('GET', '/', page.status).response.content ?? {})).toEqual(['text/html'])
    expect(page.headers.get('content-type')).toMatch(/^text\/html/)
    await page.text()
    await call('GET', '/v1/peers')
    await call('GET', '/v1/tasks')
    await call('GET', '/v1/health')
    expect((await call<{ draining: boolean }>('POST', '/v1/peers/self/drain')).body.draining).toBe(true)
    expect((await call<{ draining: boolean }>('POST', '/v1/peers/self/undrain')).body.draining).toBe(false)
    expect((await call('POST', '/v1/peers/12D3KooWnobody/drain')).status).toBe(404)
    const metrics = await c.request('GET', '/metrics')
    expect(Object.keys(described('GET', '/metrics', metrics.status).response.content ?? {})).toEqual([
      'text/plain'
    ])
    await metrics.text()
  })

  it('every operation of the document was answered here, and checked', () => {
    const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`)
    )
    const answered = new Set([...checked].map((k) => k.split(' ').slice(0, 2).join(' ')))
    expect(operations.filter((o) => !answered.has(o) && o !== 'GET /openapi.json')).toEqual([])
  })
})
