import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DaemonProcess, FAST, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import type { ErrorBody } from '../../src/core/api.ts'
import { apiError, client } from './helpers.ts'

describe('HTTP API: bad input gets a clear 4xx and loses nothing', () => {
  const d = new DaemonProcess({ name: 'api', config: FAST })

  beforeAll(async () => {
    await d.start()
  })
  afterAll(async () => {
    await stopAll([d])
  })

  const cases: Array<[string, unknown, number, string, RegExp]> = [
    ['unknown task', { task: 'nope', items: ['a'] }, 403, 'TASK_NOT_ALLOWED', /^task: "nope"/],
    [
      'both items and range',
      { task: 'echo', items: ['a'], range: { start: 0, end: 2 } },
      400,
      'INVALID_SPEC',
      /^items\/range/
    ],
    ['neither items nor range', { task: 'echo' }, 400, 'INVALID_SPEC', /^items\/range/],
    [
      'fragmentSize 0',
      { task: 'echo', items: ['a'], fragmentSize: 0 },
      400,
      'INVALID_SPEC',
      /^fragmentSize: must be >= 1/
    ],
    [
      'fragmentSize as a string',
      { task: 'echo', items: ['a'], fragmentSize: '5' },
      400,
      'INVALID_SPEC',
      /^fragmentSize: must be integer/
    ],
    ['task as a number', { task: 7, items: ['a'] }, 400, 'INVALID_SPEC', /^task: must be string/],
    ['items as an object', { task: 'echo', items: { a: 1 } }, 400, 'INVALID_SPEC', /^items: must be array/],
    [
      'empty items',
      { task: 'echo', items: [] },
      400,
      'INVALID_SPEC',
      /^items: must NOT have fewer than 1 items/
    ],
    [
      'range the wrong way',
      { task: 'echo', range: { start: 5, end: 5 } },
      400,
      'INVALID_SPEC',
      /^range\.end/
    ],
    [
      'range of floats',
      { task: 'echo', range: { start: 0.5, end: 5 } },
      400,
      'INVALID_SPEC',
      /^range\.start: must be integer/
    ],
    [
      'an unknown field',
      { task: 'echo', items: ['a'], colour: 'red' },
      400,
      'INVALID_SPEC',
      /^colour: unknown field/
    ],
    [
      'env of numbers',
      { task: 'echo', items: ['a'], env: { A: 1 } },
      400,
      'INVALID_SPEC',
      /^env\.A: must be string/
    ],
    [
      'env setting SHOAL_*',
      { task: 'echo', items: ['a'], env: { SHOAL_JOB_ID: 'x' } },
      400,
      'INVALID_SPEC',
      /^env\.SHOAL_JOB_ID: is not an allowed name/
    ],
    [
      'attempts 0',
      { task: 'echo', items: ['a'], attempts: 0 },
      400,
      'INVALID_SPEC',
      /^attempts: must be >= 1/
    ],
    [
      'timeoutSeconds negative',
      { task: 'echo', items: ['a'], timeoutSeconds: -1 },
      400,
      'INVALID_SPEC',
      /^timeoutSeconds: must be > 0/
    ],
    [
      'priority as a float',
      { task: 'echo', items: ['a'], priority: 1.5 },
      400,
      'INVALID_SPEC',
      /^priority: must be integer/
    ],
    [
      'a string item with a newline',
      { task: 'echo', items: ['a\nb'] },
      400,
      'INVALID_SPEC',
      /^items\[0\]: a string item may not contain a newline/
    ],
    [
      'maxConcurrency 0',
      { task: 'echo', items: ['a'], maxConcurrency: 0 },
      400,
      'INVALID_SPEC',
      /^maxConcurrency: must be >= 1/
    ],
    [
      'maxConcurrency as a string',
      { task: 'echo', items: ['a'], maxConcurrency: '2' },
      400,
      'INVALID_SPEC',
      /^maxConcurrency: must be integer/
    ],
    [
      'retryOn with 0',
      { task: 'echo', items: ['a'], retryOn: [0] },
      400,
      'INVALID_SPEC',
      /^retryOn\[0\]: must be >= 1/
    ],
    [
      'retryOn not a list',
      { task: 'echo', items: ['a'], retryOn: 3 },
      400,
      'INVALID_SPEC',
      /^retryOn: must be array/
    ],
    [
      'retryOn over 255',
      { task: 'echo', items: ['a'], retryOn: [256] },
      400,
      'INVALID_SPEC',
      /^retryOn\[0\]: must be <= 255/
    ],
    [
      'attempts over 100',
      { task: 'echo', items: ['a'], attempts: 101 },
      400,
      'INVALID_SPEC',
      /^attempts: must be <= 100/
    ],
    [
      'timeoutSeconds 0',
      { task: 'echo', items: ['a'], timeoutSeconds: 0 },
      400,
      'INVALID_SPEC',
      /^timeoutSeconds: must be > 0/
    ],
    [
      'priority too large',
      { task: 'echo', items: ['a'], priority: 1e9 },
      400,
      'INVALID_SPEC',
      /^priority: must be <= 1000000/
    ],
    [
      'an empty idempotencyKey',
      { task: 'echo', items: ['a'], idempotencyKey: '' },
      400,
      'INVALID_SPEC',
      /^idempotencyKey: must NOT have fewer than 1 characters/
    ],
    [
      'labels of numbers',
      { task: 'echo', items: ['a'], labels: { team: 7 } },
      400,
      'INVALID_SPEC',
      /^labels\.team: must be string/
    ],
    [
      'name as a number',
      { task: 'echo', items: ['a'], name: 5 },
      400,
      'INVALID_SPEC',
      /^name: must be string/
    ],
    ['an array body', [1, 2], 400, 'INVALID_SPEC', /must be object/],
    ['a broken JSON body', '{"task": "echo", ', 400, 'INVALID_JSON', /^body: not valid JSON/],
    ['an empty body', '', 400, 'INVALID_JSON', /^body/]
  ]

  it.each(cases)('%s → %s %s', async (_what, body, status, code, message) => {
    // The body as given: a spec's JSON, or text that is not JSON at all.
    const err = await apiError(client(d.api).submit(typeof body === 'string' ? body : JSON.stringify(body)))
    expect(err.status).toBe(status)
    expect(err.code).toBe(code)
    expect(err.body?.error.message).toMatch(message)
  })

  it('a wrong content type → 415', async () => {
    const res = await fetch(`${d.api}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/xml' },
      body: '<job/>'
    })
    expect(res.status).toBe(415)
    expect(((await res.json()) as ErrorBody).error.code).toBe('UNSUPPORTED_MEDIA_TYPE')
  })

  it('unknown jobs and routes → 404 with the error shape', async () => {
    const api = client(d.api)
    for (const call of [
      () => api.job('01NOPE'),
      () => api.fragments('01NOPE'),
      () => api.output('01NOPE'),
      () => api.request('GET', '/v1/nothing')
    ]) {
      const err = await apiError(call())
      expect(err.status).toBe(404)
      expect(err.code).toMatch(/NOT_FOUND/)
    }
    expect((await apiError(api.jobs('DONE'))).status).toBe(400)
  })

  it('keeps serving and runs good jobs after all of that; nothing bad was stored', async () => {
    const api = client(d.api)
    const job = await api.submit({ task: 'echo', range: { start: 0, end: 10 }, fragmentSize: 3 })
    expect(job.fragments).toBe(4)
    await waitUntil('job to succeed', async () => (await api.job(job.id)).state === 'SUCCEEDED')
    expect(await api.output(job.id)).toEqual({
      text: Array.from({ length: 10 }, (_, i) => `${i}\n`).join(''),
      complete: true
    })
    expect((await api.jobs()).map((j) => j.id)).toEqual([job.id])
    expect((await api.health()).status).toBe('ok')
  })

  it('lists jobs newest first and filters by state', async () => {
    const api = client(d.api)
    const second = await api.submit({ task: 'fail', items: [1], attempts: 1 })
    await waitUntil('failure', async () => (await api.job(second.id)).state === 'FAILED')
    expect((await api.jobs())[0]?.id).toBe(second.id)
    expect((await api.jobs('FAILED')).map((j) => j.id)).toEqual([second.id])
    expect(await api.fragments(second.id)).toEqual([
      expect.objectContaining({ state: 'FAILED', statusReason: 'EXIT_CODE', exitCode: 3, attempt: 1 })
    ])
  })

  it('serves Prometheus metrics', async () => {
    const text = await (await fetch(`${d.api}/metrics`)).text()
    expect(text).toMatch(/shoal_fragment_tries_total\{result="success"\} [1-9]/)
    expect(text).toMatch(/shoal_jobs\{state="SUCCEEDED"\} 1/)
  })
})
