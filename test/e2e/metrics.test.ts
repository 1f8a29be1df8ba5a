import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, ROOT, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import type { JobMetric } from '../../src/core/metrics.ts'
import { QUANTILE_RELATIVE_ERROR } from '../../src/core/metrics.ts'
import { client, health, submit, TEST_CONFIG, waitMeshReady, waitState } from './helpers.ts'

const FIXTURES = join(ROOT, 'test', 'fixtures')
// Each fragment (one item n) emits the ten values n*10 .. n*10+9 on fd 3, one line that is not
// JSON, and exits at once, without waiting for anything to be read.
const EMIT = [
  'sh',
  '-c',
  'read n; i=0; while [ $i -lt 10 ]; do echo "{\\"name\\":\\"rows\\",\\"value\\":$((n * 10 + i)),\\"labels\\":{\\"kind\\":\\"a\\"}}" >&"$SHOAL_METRICS_FD"; i=$((i + 1)); done; echo oops >&3; echo "$n"'
]
// Writes 200,000 good values and 4 MB without a newline to fd 3.
const FLOOD = [
  'sh',
  '-c',
  'read n; yes \'{"name":"flood","value":1}\' | head -n 200000 >&3; head -c 4000000 /dev/zero | tr "\\0" x >&3; echo "$n"'
]
const CONFIG = {
  ...TEST_CONFIG,
  tasks: {
    ...TEST_CONFIG.tasks,
    emit: { command: EMIT },
    flood: { command: FLOOD },
    measured: { module: join(FIXTURES, 'module-task.mjs'), export: 'measured' },
    'nd-measured': { command: ['node', join(FIXTURES, 'metrics-worker.mjs')], protocol: 'ndjson' }
  }
}

const series = (metrics: JobMetric[], name: string): JobMetric | undefined =>
  metrics.find((m) => m.name === name)

describe('task metrics: emitted asynchronously, aggregated in batches, answered by any daemon', () => {
  let mesh: DaemonProcess[] = []
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
  })

  it('100 fragments each emit 10 values and exit at once: every daemon counts 1,000, the sum exact, quantiles within the sketch error', async () => {
    mesh = await startMesh({ count: 3, config: CONFIG })
    const a = mesh[0] as DaemonProcess
    await waitMeshReady(mesh.map((d) => d.api))
    const j = await submit(a.api, { task: 'emit', range: { start: 0, end: 100 }, fragmentSize: 1 })
    await waitState(a.api, j.id, 'SUCCEEDED')
    const values = Array.from({ length: 1000 }, (_, v) => v) // n*10+i over n<100, i<10: 0..999
    for (const d of mesh) {
      const m = await waitUntil(
        `${d.name} to count every value`,
        async () => {
          const got = await client(d.api).metrics(j.id)
          // Every try's figures in (one per fragment, or more if some ran twice): then compare.
          return (series(got.metrics, 'shoal_tries')?.count ?? 0) >= 100 &&
            (series(got.metrics, 'rows')?.count ?? 0) >= 1000
            ? got
            : undefined
        },
        20_000
      )
      const rows = series(m.metrics, 'rows') as JobMetric
      expect(rows).toMatchObject({
        task: 'emit',
        labels: { kind: 'a' },
        count: 1000,
        sum: 499_500,
        min: 0,
        max: 999
      })
      for (const [q, got] of [
        [0.5, rows.p50],
        [0.9, rows.p90],
        [0.99, rows.p99]
      ] as const) {
        const want = values[Math.floor(q * (values.length - 1))] as number
        expect(Math.abs((got as number) - want)).toBeLessThanOrEqual(want * QUANTILE_RELATIVE_ERROR + 1e-9)
      }
      // One bad line per fragment, dropped and counted; Shoal's own figures went the same way.
      expect(m.dropped).toBe(100)
      expect(series(m.metrics, 'shoal_tries')).toMatchObject({ count: 100, labels: { result: 'SUCCEEDED' } })
      expect(series(m.metrics, 'shoal_run_seconds')?.count).toBe(100)
      // each fragment printed its number and a newline: 10 × 2 + 90 × 3 bytes
      expect(series(m.metrics, 'shoal_output_bytes')?.sum).toBe(290)
    }
    // More than one daemon ran the fragments: the figures are the mesh's, not one daemon's.
    const peers = new Set((await client(a.api).fragments(j.id)).map((f) => f.peer))
    expect(peers.size).toBeGreaterThan(1)
    // /metrics exports them.
    const text = await (await fetch(`${a.api}/metrics`)).text()
    expect(text).toContain(
      `shoal_task_metric_values{job="${j.id}",task="emit",metric="rows",labels="kind=a"} 1000`
    )
    expect(text).toMatch(
      new RegExp(
        `shoal_task_metric_value_p50\\{job="${j.id}",task="emit",metric="rows",labels="kind=a"\\} \\d`
      )
    )
  })

  it('module tasks (ctx.metric) and persistent workers (metrics in the answer); a flood of values is bounded and the daemon keeps serving', async () => {
    mesh = await startMesh({ count: 1, config: CONFIG })
    const a = mesh[0] as DaemonProcess
    await waitMeshReady([a.api])
    const mod = await submit(a.api, { task: 'measured', range: { start: 1, end: 21 }, fragmentSize: 2 })
    const nd = await submit(a.api, { task: 'nd-measured', range: { start: 1, end: 21 }, fragmentSize: 2 })
    const flood = await submit(a.api, { task: 'flood', items: ['x'] })
    for (const id of [mod.id, nd.id, flood.id]) await waitState(a.api, id, 'SUCCEEDED')
    for (const [id, via] of [
      [mod.id, 'module'],
      [nd.id, 'ndjson']
    ] as const) {
      const m = await waitUntil(
        'the values',
        async () => {
          const got = await client(a.api).metrics(id)
          return series(got.metrics, 'seen')?.count === 20 ? got : undefined
        },
        20_000
      )
      expect(series(m.metrics, 'seen')).toMatchObject({
        labels: { via },
        count: 20,
        sum: 210,
        min: 1,
        max: 20
      })
      expect(m.dropped).toBe(via === 'module' ? 40 : 10) // four bad module values per fragment, one ndjson
    }
    const f = await waitUntil(
      'the flood counted',
      async () => {
        const got = await client(a.api).metrics(flood.id)
        return series(got.metrics, 'flood') !== undefined ? got : undefined
      },
      20_000
    )
    // 100,000 values kept per try; the other 100,000 and the 4 MB line dropped.
    expect(series(f.metrics, 'flood')?.count).toBe(100_000)
    expect(f.dropped).toBe(100_001)
    expect((await health(a.api)).status).toBe('ok')
    const dropped = await (await fetch(`${a.api}/metrics`)).text()
    // 40 bad module values, 10 bad ndjson values, and the flood's 100,001
    expect(dropped).toMatch(/^shoal_task_metric_values_dropped_total 100051$/m)
  })
})
