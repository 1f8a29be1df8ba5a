import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, ROOT, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import {
  client,
  fragments,
  health,
  lines,
  output,
  submit,
  TEST_CONFIG,
  waitMeshReady,
  waitState
} from './helpers.ts'

const FIXTURES = join(ROOT, 'test', 'fixtures')
const WARM_CONFIG = {
  ...TEST_CONFIG,
  tasks: {
    ...TEST_CONFIG.tasks,
    double: { module: join(FIXTURES, 'module-task.mjs') },
    misbehave: { module: join(FIXTURES, 'module-task.mjs'), export: 'misbehave', maxMemoryMb: 32 },
    persistent: { command: ['node', join(FIXTURES, 'ndjson-worker.mjs')], protocol: 'ndjson' }
  }
}

/** A metric's value for one task from /metrics (0 when absent). */
async function metric(api: string, name: string, task: string): Promise<number> {
  const res = await fetch(`${api}/metrics`)
  const m = new RegExp(`^${name}\\{[^}]*task="${task}"[^}]*\\} (\\S+)$`, 'm').exec(await res.text())
  return Number(m?.[1] ?? 0)
}

describe('warm capacity: module tasks and persistent workers', () => {
  let mesh: DaemonProcess[] = []
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
  })

  it('a module task over three daemons gives the exact output from any daemon; misbehaving modules fail their fragment only', async () => {
    mesh = await startMesh({ count: 3, config: WARM_CONFIG })
    const [a] = mesh as [DaemonProcess, DaemonProcess, DaemonProcess]
    await waitMeshReady(mesh.map((d) => d.api))
    const j = await submit(a.api, { task: 'double', range: { start: 0, end: 60 }, fragmentSize: 1 })
    await waitState(a.api, j.id, 'SUCCEEDED')
    const want = lines(Array.from({ length: 60 }, (_, i) => `${i * 2} ${i} fenced`))
    // Each daemon serves the whole output once it knows the job succeeded (before that, what
    // it has, flagged incomplete: the last results may still be on their way to it).
    for (const d of mesh) {
      await waitState(d.api, j.id, 'SUCCEEDED')
      expect(await output(d.api, j.id)).toEqual({ text: want, complete: true })
    }
    // The fragments ran on more than one daemon.
    expect(new Set((await fragments(a.api, j.id)).map((f) => f.peer)).size).toBeGreaterThan(1)

    const bad = await submit(a.api, {
      task: 'misbehave',
      items: ['throw', 'hang', 'exit', 'oom', 'fine'],
      fragmentSize: 1,
      attempts: 1,
      timeoutSeconds: 2
    })
    await waitState(a.api, bad.id, 'FAILED', 30_000)
    const byItem = new Map((await fragments(a.api, bad.id)).map((f) => [f.itemRange.start, f]))
    expect(byItem.get(0)).toMatchObject({ state: 'FAILED', statusReason: 'EXIT_CODE', exitCode: 1 })
    expect(byItem.get(1)).toMatchObject({ state: 'FAILED', statusReason: 'TIMEOUT' })
    expect(byItem.get(2)).toMatchObject({ state: 'FAILED', statusReason: 'EXIT_CODE', exitCode: 3 })
    expect(byItem.get(3)).toMatchObject({ state: 'FAILED', statusReason: 'EXIT_CODE' })
    expect(byItem.get(4)).toMatchObject({ state: 'SUCCEEDED' })
    const logs = await Promise.all([0, 2, 3].map((i) => client(a.api).tryLog(bad.id, String(i))))
    expect(logs[0]?.text).toContain('the item was bad')
    expect(logs[1]?.text).toContain('process.exit(3)')
    expect(logs[2]?.text).toContain('out of memory')
    // Every daemon still serves and runs module tasks.
    for (const d of mesh) expect((await health(d.api)).status).toBe('ok')
    const again = await submit(a.api, { task: 'double', items: [21], fragmentSize: 1 })
    await waitState(a.api, again.id, 'SUCCEEDED')
  })

  it('a persistent worker answers fragment after fragment; one that crashes is replaced and its fragment retried', async () => {
    mesh = await startMesh({ count: 1, config: { ...WARM_CONFIG, capacity: 2 } })
    const [a] = mesh as [DaemonProcess]
    const items = [1, 2, 3, 4, 5, 6, 7, 8]
    const j = await submit(a.api, { task: 'persistent', items, fragmentSize: 1 })
    await waitState(a.api, j.id, 'SUCCEEDED')
    const out = (await output(a.api, j.id)).text.trim().split('\n')
    expect(out.map((l) => l.split(' ')[0])).toEqual(items.map((n) => String(n * 2)))
    // At most two processes (capacity 2) answered all eight fragments: warm, not one per fragment.
    expect(new Set(out.map((l) => l.split(' pid ')[1])).size).toBeLessThanOrEqual(2)

    const c = await submit(a.api, {
      task: 'persistent',
      items: ['crash', 'fail'],
      fragmentSize: 1,
      attempts: 2
    })
    await waitState(a.api, c.id, 'FAILED')
    const [crash, fail] = await fragments(a.api, c.id)
    // The crash killed its worker on attempt 1; attempt 2 ran on a new one and succeeded.
    expect(crash).toMatchObject({ state: 'SUCCEEDED', attempt: 2 })
    expect(crash?.tries[0]).toMatchObject({ attempt: 1, exitCode: 9 })
    expect((await client(a.api).tryLog(c.id, '0', 1)).text).toContain('crashing on purpose')
    expect(fail).toMatchObject({ state: 'FAILED', exitCode: 4 })
    expect((await client(a.api).tryLog(c.id, '1')).text).toContain('the item failed')
  })

  it('the pool grows ahead of a steady stream of fragments and shrinks when it stops', async () => {
    mesh = await startMesh({ count: 1, config: { ...WARM_CONFIG, capacity: 4 } })
    const [a] = mesh as [DaemonProcess]
    expect(await metric(a.api, 'shoal_pool_workers', 'misbehave')).toBe(1) // minWarm 1
    // Fragments of 50 ms, four at a time, for about six seconds.
    const j = await submit(a.api, {
      task: 'misbehave',
      items: Array.from({ length: 400 }, () => 'slow'),
      fragmentSize: 1
    })
    const grew = await waitUntil(
      'the pool to grow',
      async () => {
        const [size, forecast] = await Promise.all([
          metric(a.api, 'shoal_pool_workers', 'misbehave'),
          metric(a.api, 'shoal_pool_forecast_workers', 'misbehave')
        ])
        return size >= 3 && forecast >= 3 ? { size, forecast } : null
      },
      20_000
    )
    expect(grew.size).toBeGreaterThanOrEqual(3)
    await waitState(a.api, j.id, 'SUCCEEDED', 60_000)
    expect(await metric(a.api, 'shoal_pool_warm_hits_total', 'misbehave')).toBeGreaterThan(300)
    // Idle: the forecast decays and the extra threads retire, down to minWarm.
    await waitUntil(
      'the pool to shrink',
      async () => (await metric(a.api, 'shoal_pool_workers', 'misbehave')) <= 1,
      60_000
    )
  }, 120_000)
})
