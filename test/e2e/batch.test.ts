import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, sleep, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { ApiError } from '../../src/cli/client.ts'
import { client, fragments, job, lines, submit, TEST_CONFIG, waitMeshReady, waitState } from './helpers.ts'

const CONFIG = { ...TEST_CONFIG, retryBackoffMs: 100 }

describe('batch semantics with three daemons', () => {
  let mesh: DaemonProcess[] = []
  beforeAll(async () => {
    mesh = await startMesh({ count: 3, config: CONFIG })
    await waitMeshReady(mesh.map((d) => d.api))
  })
  afterAll(async () => {
    await stopAll(mesh)
  })

  it('a task failing its first attempt and passing its second ends SUCCEEDED at attempt 2', async () => {
    const [a] = mesh as [DaemonProcess]
    const j = await submit(a.api, { task: 'flaky', range: { start: 0, end: 6 }, attempts: 3 })
    await waitState(a.api, j.id, 'SUCCEEDED')
    for (const f of await fragments(a.api, j.id)) expect(f).toMatchObject({ state: 'SUCCEEDED', attempt: 2 })
  })

  it('with retryOn not listing the exit code it fails at once: EXIT_CODE, attempt 1', async () => {
    const [a] = mesh as [DaemonProcess]
    const j = await submit(a.api, { task: 'flaky', items: ['x'], attempts: 3, retryOn: [1, 2] })
    await waitState(a.api, j.id, 'FAILED')
    expect(await fragments(a.api, j.id)).toEqual([
      expect.objectContaining({ state: 'FAILED', statusReason: 'EXIT_CODE', attempt: 1, exitCode: 4 })
    ])
    const listed = await submit(a.api, { task: 'flaky', items: ['y'], attempts: 2, retryOn: [4] })
    await waitState(a.api, listed.id, 'SUCCEEDED')
  })

  it('a 12-item fragment past its lifespan is stopped, split, and the job succeeds with every item in order', async () => {
    const [a, , c] = mesh as [DaemonProcess, DaemonProcess, DaemonProcess]
    const items = Array.from({ length: 12 }, (_, i) => `item${i}`)
    const j = await submit(a.api, { task: 'per-item', items, fragmentSize: 12, timeoutSeconds: 1.5 })
    await waitState(a.api, j.id, 'SUCCEEDED', 60_000)
    const fs = await fragments(a.api, j.id)
    expect(fs.length).toBeGreaterThan(1)
    expect(fs.map((f) => f.path)).toEqual([...fs.map((f) => f.path)].sort())
    expect(fs.every((f) => f.path.startsWith('0.'))).toBe(true)
    await waitState(c.api, j.id, 'SUCCEEDED')
    expect((await client(c.api).output(j.id)).text).toBe(lines(items))
    const view = await job(c.api, j.id)
    expect(view.statusSummary.SUCCEEDED).toBe(fs.length)
  })

  it('maxConcurrency 2: sampling /fragments never shows more than 2 RUNNING, and shows 2', async () => {
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    const j = await submit(a.api, { task: 'nap', range: { start: 0, end: 24 }, maxConcurrency: 2 })
    let max = 0
    let sawTwo = false
    for (;;) {
      for (const d of [a, b]) {
        const running = (await fragments(d.api, j.id)).filter((f) => f.state === 'RUNNING').length
        max = Math.max(max, running)
        if (running === 2) sawTwo = true
      }
      if ((await job(a.api, j.id)).state === 'SUCCEEDED') break
      await sleep(20)
    }
    expect(max).toBeLessThanOrEqual(2)
    expect(sawTwo).toBe(true)
    const metrics = await Promise.all(mesh.map(async (d) => (await fetch(`${d.api}/metrics`)).text()))
    for (const m of metrics) expect(m).toMatch(/shoal_max_concurrency_overshoot 0/)
  })

  it('without fragmentSize the accepting daemon picks one by the sizing rule and stores it', async () => {
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    // 3 daemons × capacity 4 = 12 slots: at most ceil(1000 / 48) = 21 items per fragment.
    const j = await submit(a.api, { task: 'echo', range: { start: 0, end: 1000 } })
    expect(j.fragmentSize).toBe(21)
    expect(j.fragments).toBe(48)
    await waitState(b.api, j.id, 'SUCCEEDED')
    const seen = await job(b.api, j.id)
    expect(seen.fragmentSize).toBe(21)
    expect((await client(b.api).output(j.id)).text).toBe(lines(Array.from({ length: 1000 }, (_, i) => i)))
  })

  it('a high-priority job submitted after a large low-priority one finishes first', async () => {
    const [a] = mesh as [DaemonProcess]
    // Long enough (about 10 s of work for the mesh) that "first" is not a matter of a loaded
    // machine's timing: high must jump the queue, not merely be quick.
    const low = await submit(a.api, {
      task: 'nap',
      range: { start: 0, end: 200 },
      fragmentSize: 2,
      priority: 0
    })
    await sleep(300)
    const high = await submit(a.api, { task: 'nap', range: { start: 0, end: 6 }, priority: 10 })
    const highDone = await waitState(a.api, high.id, 'SUCCEEDED', 60_000)
    const lowNow = await job(a.api, low.id)
    expect(lowNow.state).not.toBe('SUCCEEDED')
    await waitState(a.api, low.id, 'SUCCEEDED', 60_000)
    expect(highDone.statusSummary.SUCCEEDED).toBe(6)
  })

  it('idempotency: one key and spec sent to two daemons at once give one job; another spec under the key gets 422', async () => {
    const [a, b, c] = mesh as [DaemonProcess, DaemonProcess, DaemonProcess]
    const spec = { task: 'echo', items: ['i1', 'i2'], idempotencyKey: 'nightly-2026-11-23' }
    const [ra, rb] = await Promise.all([submit(a.api, spec), submit(b.api, spec)])
    expect(ra.id).toBe(rb.id)
    const again = await submit(c.api, spec)
    expect(again.id).toBe(ra.id)
    await waitState(a.api, ra.id, 'SUCCEEDED')
    const jobs = await client(c.api).jobs()
    expect(jobs.filter((x) => x.id === ra.id)).toHaveLength(1)
    const other = await submit(a.api, { ...spec, items: ['different'] }).catch((err: unknown) => err)
    expect(other).toBeInstanceOf(ApiError)
    expect(other).toMatchObject({ status: 422, code: 'IDEMPOTENCY_CONFLICT' })
  })

  it('two different specs raced under one key converge on one job, with the rival listed', async () => {
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    const key = `race-${Date.now()}`
    const race = (d: DaemonProcess, item: string) =>
      submit(d.api, { task: 'echo', items: [item], idempotencyKey: key }).then(
        (j) => ({ status: 202, id: j.id }),
        (err: unknown) => ({ status: err instanceof ApiError ? err.status : -1, id: undefined })
      )
    const results = await Promise.all([race(a, 'from-a'), race(b, 'from-b')])
    const accepted = results.filter((r) => r.status === 202)
    expect(accepted.length).toBeGreaterThanOrEqual(1)
    for (const r of results) expect([202, 422]).toContain(r.status)
    const id = accepted[0]?.id as string
    const views = await waitUntil('both daemons to agree on one spec', async () => {
      const [va, vb] = await Promise.all([job(a.api, id), job(b.api, id)])
      return JSON.stringify(va.conflicts) === JSON.stringify(vb.conflicts) &&
        va.state === 'SUCCEEDED' &&
        vb.state === 'SUCCEEDED'
        ? [va, vb]
        : null
    })
    const out = (await client(a.api).output(id)).text
    expect(['from-a\n', 'from-b\n']).toContain(out)
    expect((await client(b.api).output(id)).text).toBe(out)
    if (accepted.length === 2) expect(views[0]?.conflicts).toHaveLength(1)
  })
})
