import { DDSketch } from '@datadog/sketches-js'
import fc from 'fast-check'
import { describe, expect, it, vi } from 'vitest'
import { canonical } from '../../../src/core/canonical.ts'
import {
  aggregateJob,
  checkSample,
  type JobMetric,
  METRIC_LIMITS,
  type MetricRegister,
  type MetricSeries,
  mergeMetricRegister,
  parseMetricLine,
  QUANTILE_RELATIVE_ERROR,
  SeriesAggregate
} from '../../../src/core/metrics.ts'
import type { Log } from '../../../src/core/ports.ts'
import type { Entry } from '../../../src/core/state.ts'
import { checkEntry } from '../../../src/core/wire.ts'
import { systemClock } from '../../../src/daemon/clock.ts'
import { Metrics } from '../../../src/daemon/metrics.ts'
import { MetricsKeeper } from '../../../src/engine/metrics.ts'
import { MemoryStore, Replica } from '../../../src/store/index.ts'
import { MetricsIntake } from '../../../src/worker/metrics-intake.ts'

function register(peer: string, values: number[], over: Partial<MetricRegister> = {}): MetricRegister {
  const agg = new SeriesAggregate('emit', 'rows', { kind: 'a' })
  for (const v of values) agg.add(v)
  return { job: 'j1', peer, incarnation: 1, seq: 1, series: [agg.toSeries()], dropped: 0, ...over }
}

/** The exact q-quantile of a sorted list, as DDSketch defines its rank (lower, 0-based). */
function exactQuantile(sorted: number[], q: number): number {
  return sorted[Math.floor(q * (sorted.length - 1))] as number
}

describe('metric values are checked one by one', () => {
  it.each([
    ['not json', /not JSON/],
    ['[1,2]', /not an object/],
    ['{"value":1}', /^name/],
    ['{"name":"9lives","value":1}', /^name/],
    ['{"name":"rows","value":"3"}', /^value/],
    ['{"name":"rows","value":1e999}', /^value/],
    ['{"name":"rows","value":1,"labels":{"a":1}}', /^labels\.a/],
    ['{"name":"rows","value":1,"labels":{"bad-name":"x"}}', /^labels/],
    [`{"name":"rows","value":1,"pad":"${'x'.repeat(5000)}"}`, /too long/]
  ])('%# is dropped', (line, why) => {
    expect(parseMetricLine(line)).toMatch(why)
  })
  it('a good value keeps its labels', () => {
    expect(parseMetricLine('{"name":"rows","value":3,"labels":{"kind":"a"}}')).toEqual({
      name: 'rows',
      value: 3,
      labels: { kind: 'a' }
    })
    expect(checkSample({ name: 'rows', value: -2.5, labels: {} })).toEqual({ name: 'rows', value: -2.5 })
  })
})

describe('the intake of one try', () => {
  it('reads lines across chunks, drops bad and overlong lines once each, takes a last line without newline', () => {
    const m = new MetricsIntake()
    const text = `{"name":"a","value":1}\n{"name":"a","val${''}ue":2}\nnope\n${'x'.repeat(10_000)}\n{"name":"a","value":3}`
    const bytes = Buffer.from(text)
    for (let i = 0; i < bytes.length; i += 7) m.write(bytes.subarray(i, i + 7))
    m.end()
    expect(m.result().metrics).toEqual([{ name: 'a', values: [1, 2, 3] }])
    expect(m.dropped).toBe(2)
  })
  it('keeps at most the per-try limit and counts the rest', () => {
    const m = new MetricsIntake()
    m.take(Array.from({ length: METRIC_LIMITS.perTry + 5 }, (_, i) => ({ name: 'n', value: i })))
    expect([m.count, m.dropped]).toEqual([METRIC_LIMITS.perTry, 5])
  })
  it('a module thread’s groups: checked once per series, each value on its own', () => {
    const m = new MetricsIntake()
    m.takeGrouped([
      ['rows', { kind: 'a' }, [1, 2, Number.NaN, 'x']],
      ['bad name!', null, [1, 2, 3]],
      'junk',
      ['hits', null, [5]]
    ])
    expect(m.result()).toEqual({
      metrics: [
        { name: 'rows', labels: { kind: 'a' }, values: [1, 2] },
        { name: 'hits', values: [5] }
      ],
      metricsDropped: 6
    })
  })
  it('a multi-byte character split between chunks is read whole', () => {
    const m = new MetricsIntake()
    const bytes = Buffer.from('{"name":"a","value":1,"labels":{"k":"é"}}\n')
    const cut = bytes.indexOf(0xc3) + 1
    m.write(bytes.subarray(0, cut))
    m.write(bytes.subarray(cut))
    m.end()
    expect(m.result().metrics).toEqual([{ name: 'a', labels: { k: 'é' }, values: [1] }])
  })
})

describe('aggregates', () => {
  it('a register merge is a join: the owner’s newest (incarnation, seq) wins', () => {
    const arb = fc
      .record({
        inc: fc.integer({ min: 1, max: 3 }),
        seq: fc.integer({ min: 1, max: 3 }),
        n: fc.integer({ min: 1, max: 3 })
      })
      .map((r) => register('p1', [r.n], { incarnation: r.inc, seq: r.seq }))
    fc.assert(
      fc.property(arb, arb, arb, (a, b, c) => {
        expect(canonical(mergeMetricRegister(a, b))).toBe(canonical(mergeMetricRegister(b, a)))
        expect(canonical(mergeMetricRegister(mergeMetricRegister(a, b), c))).toBe(
          canonical(mergeMetricRegister(a, mergeMetricRegister(b, c)))
        )
        expect(mergeMetricRegister(a, a)).toBe(a)
      })
    )
    expect(
      mergeMetricRegister(register('p1', [1], { incarnation: 2, seq: 1 }), register('p1', [1], { seq: 9 }))
        .incarnation
    ).toBe(2)
  })

  it('over several daemons: count and sum exact, min and max exact, quantiles within the stated error', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.array(fc.double({ min: 0.001, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 200 }),
          {
            minLength: 1,
            maxLength: 4
          }
        ),
        (perPeer) => {
          const { metrics } = aggregateJob(perPeer.map((vs, i) => register(`p${i}`, vs)))
          const all = perPeer.flat().sort((a, b) => a - b)
          const m = metrics[0]
          expect(metrics).toHaveLength(1)
          expect(m?.count).toBe(all.length)
          expect(m?.sum).toBeCloseTo(
            all.reduce((s, v) => s + v, 0),
            3
          )
          expect([m?.min, m?.max]).toEqual([all[0], all.at(-1)])
          for (const [q, got] of [
            [0.5, m?.p50],
            [0.9, m?.p90],
            [0.99, m?.p99]
          ] as const) {
            const want = exactQuantile(all, q)
            expect(Math.abs((got as number) - want)).toBeLessThanOrEqual(
              want * QUANTILE_RELATIVE_ERROR * 1.0001
            )
          }
        }
      ),
      { numRuns: 60 }
    )
  })

  it('series are kept apart by task, name and labels; dropped counts add up', () => {
    const a = register('p1', [1, 2], { dropped: 3 })
    const other = new SeriesAggregate('emit', 'rows', { kind: 'b' })
    other.add(10)
    const b: MetricRegister = {
      ...register('p2', [3]),
      series: [...register('p2', [3]).series, other.toSeries()],
      dropped: 1
    }
    const out = aggregateJob([a, b])
    expect(out.dropped).toBe(4)
    expect(out.metrics.map((m) => [m.labels.kind, m.count, m.sum])).toEqual([
      ['a', 3, 6],
      ['b', 1, 10]
    ])
  })

  it('travels the wire checked: a bad sketch or too many series is refused', () => {
    const r = register('p1', [1, 2, 3])
    expect(checkEntry({ kind: 'metric', job: 'j1', peer: 'p1', value: r })).toEqual({
      kind: 'metric',
      job: 'j1',
      peer: 'p1',
      value: r
    })
    const badSketch = { ...r, series: [{ ...r.series[0], sketch: 'AAAA////' }] }
    expect(() => checkEntry({ kind: 'metric', job: 'j1', peer: 'p1', value: badSketch })).toThrow()
    const many = {
      ...r,
      series: Array.from({ length: METRIC_LIMITS.seriesOnWire + 1 }, () => r.series[0])
    }
    expect(() => checkEntry({ kind: 'metric', job: 'j1', peer: 'p1', value: many })).toThrow()
    expect(() => checkEntry({ kind: 'metric', job: 'j1', peer: 'p2', value: r })).toThrow()
  })
})

describe('faults a red-team review found', () => {
  const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent } as unknown as Log
  async function keeper(): Promise<{ k: MetricsKeeper; replica: Replica; announced: Entry[] }> {
    const store = new MemoryStore()
    await store.open()
    const replica = new Replica(store, { clock: systemClock })
    const announced: Entry[] = []
    const k = new MetricsKeeper(1_000_000, {
      replica,
      mesh: { peerId: 'p1', announce: (e) => announced.push(...e) },
      clock: systemClock,
      logger: silent,
      incarnation: 1
    })
    return { k, replica, announced }
  }

  it('values whose sum would not be finite are dropped: every register stays one the wire accepts', async () => {
    const { k, announced } = await keeper()
    k.add('job1', 't', [{ name: 'big', values: [1e308, 1e308, -1e308] }], 0)
    k.add('job1', 't', [{ name: 'big', values: [1e308, 1e308] }], 0)
    k.flush(true)
    const entry = JSON.parse(JSON.stringify(announced[0])) as Entry
    expect(() => checkEntry(entry)).not.toThrow()
    const { metrics, dropped } = k.jobMetrics('job1')
    expect(metrics[0]).toMatchObject({ count: 3, sum: 1e308 })
    expect(dropped).toBe(2)
  })

  it('a try counts only if it is still its fragment’s when judged (a run that lost to another does not)', async () => {
    const { k } = await keeper()
    k.add('job1', 't', [{ name: 'rows', values: [1, 2] }], 0, () => true)
    k.add('job1', 't', [{ name: 'rows', values: [100] }], 0, () => false) // another run's result won
    k.flush(true)
    expect(k.jobMetrics('job1').metrics[0]).toMatchObject({ count: 2, sum: 3 })
    expect(k.superseded).toBe(1)
  })

  it('Shoal’s own names are the daemon’s: a task using them is dropped', () => {
    const m = new MetricsIntake()
    m.write(Buffer.from('{"name":"shoal_tries","value":9}\n{"name":"rows","value":1}\n'))
    m.takeGrouped([['shoal_run_seconds', null, [1, 2]]])
    m.end()
    expect(m.result()).toEqual({ metrics: [{ name: 'rows', values: [1] }], metricsDropped: 3 })
  })

  it('the series limit counts each series once, and Shoal’s own figures always have room', async () => {
    const { k } = await keeper()
    const series = (n: number, from = 0) =>
      Array.from({ length: n }, (_, i) => ({ name: 'rows', labels: { i: String(from + i) }, values: [1] }))
    k.add('job1', 't', series(40), 0)
    k.flush(true)
    k.add('job1', 't', [...series(40), ...series(24, 40)], 0) // 40 again, and 24 more: 64 in all
    k.add(
      'job1',
      't',
      [...series(1, 64), { name: 'shoal_tries', labels: { result: 'SUCCEEDED' }, values: [1] }],
      0
    )
    k.flush(true)
    const { metrics, dropped } = k.jobMetrics('job1')
    expect(metrics.filter((m) => m.name === 'rows')).toHaveLength(64)
    expect(metrics.filter((m) => m.name === 'shoal_tries')).toHaveLength(1)
    expect(dropped).toBe(1) // the 65th task series
  })

  it('the series limit holds when more than 1,024 jobs fold values between two flushes', async () => {
    const { k, announced } = await keeper()
    const series = (n: number, from = 0) =>
      Array.from({ length: n }, (_, i) => ({ name: 'rows', labels: { i: String(from + i) }, values: [1] }))
    k.add('job1', 't', series(64), 0)
    for (let j = 0; j < 1100; j++) k.add(`other${j}`, 't', series(1), 0)
    k.add('job1', 't', series(64, 64), 0) // 64 more series: past the limit, dropped
    k.flush(true)
    const entry = announced.find((e) => e.kind === 'metric' && e.job === 'job1') as Entry
    expect(() => checkEntry(JSON.parse(JSON.stringify(entry)) as Entry)).not.toThrow()
    expect(k.jobMetrics('job1').metrics.filter((m) => m.name === 'rows')).toHaveLength(64)
  })

  it('a flood of lines is counted, not parsed, past the bad-line budget and the per-try limit', () => {
    const parse = vi.spyOn(JSON, 'parse')
    try {
      const m = new MetricsIntake()
      const junk = Buffer.from('{oops\n'.repeat(50_000))
      for (let i = 0; i < 4; i++) m.write(junk)
      m.write(Buffer.from('{"name":"rows","value":1}')) // a last line without newline, also counted
      m.end()
      expect(m.dropped).toBe(200_001)
      expect(parse.mock.calls.length).toBeLessThan(60_000) // not 200,000
    } finally {
      parse.mockRestore()
    }
  })

  it('/metrics: labels that would flatten alike stay apart', async () => {
    const one = (labels: Record<string, string>): JobMetric => ({
      task: 't',
      name: 'rows',
      labels,
      count: 1,
      sum: 1,
      min: 1,
      max: 1,
      p50: 1,
      p90: 1,
      p99: 1
    })
    const m = new Metrics({
      version: '0.0.0',
      running: () => 0,
      stalls: () => 0,
      overshoot: () => 0,
      rejected: () => 0,
      peers: () => ({}),
      jobs: () => [],
      tasks: () => [],
      writable: () => true,
      pools: () => [],
      taskMetrics: () => [
        { job: 'j', metric: one({ a: '1,b=2' }) },
        { job: 'j', metric: one({ a: '1', b: '2' }) }
      ],
      metricsDropped: () => 0,
      tenants: () => [{ tenant: 'team-a', running: 3, overshoot: 1 }]
    })
    const text = await m.registry.metrics()
    expect(text).toContain('shoal_tenant_running_fragments{tenant="team-a"} 3')
    expect(text).toContain('shoal_tenant_max_running_overshoot{tenant="team-a"} 1')
    const lines = text.split('\n').filter((l) => l.startsWith('shoal_task_metric_values{'))
    expect(lines).toEqual([
      'shoal_task_metric_values{job="j",task="t",metric="rows",labels="a=1\\\\,b\\\\=2"} 1',
      'shoal_task_metric_values{job="j",task="t",metric="rows",labels="a=1,b=2"} 1'
    ])
  })
})

describe('faults a red-team review found: negative values', () => {
  const signed = fc
    .tuple(fc.double({ min: 0.001, max: 1e6, noNaN: true }), fc.boolean())
    .map(([v, neg]) => (neg ? -v : v))
  it('over several daemons (and several flushes), quantiles of negative values stay within the stated error', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(signed, { minLength: 1, maxLength: 200 }), { minLength: 1, maxLength: 4 }),
        (perPeer) => {
          const { metrics } = aggregateJob(perPeer.map((vs, i) => register(`p${i}`, vs)))
          const all = perPeer.flat().sort((a, b) => a - b)
          const m = metrics[0] as JobMetric
          expect(m.count).toBe(all.length)
          for (const [q, got] of [
            [0.5, m.p50],
            [0.9, m.p90],
            [0.99, m.p99]
          ] as const) {
            const want = exactQuantile(all, q)
            expect(Math.abs((got as number) - want)).toBeLessThanOrEqual(
              Math.abs(want) * QUANTILE_RELATIVE_ERROR * 1.0001
            )
          }
        }
      ),
      { numRuns: 100 }
    )
  })

  it('two daemons: -1..-50 and -51..-100 have a median near -50, not -1', () => {
    const down = (from: number) => Array.from({ length: 50 }, (_, i) => -(from + i))
    const m = aggregateJob([register('p1', down(1)), register('p2', down(51))]).metrics[0] as JobMetric
    expect(m.p50).toBeLessThan(-45)
    expect(m.p50).toBeGreaterThan(-55)
  })
})

describe('faults a red-team review found: a sketch of another mapping', () => {
  it('is refused on the wire: it would make every merge of the job throw (GET metrics, /metrics)', () => {
    const r = register('p1', [1, 2, 3])
    const other = new DDSketch({ relativeAccuracy: 0.02 })
    other.accept(5)
    const odd = {
      ...r,
      series: [{ ...(r.series[0] as MetricSeries), sketch: Buffer.from(other.toProto()).toString('base64') }]
    }
    expect(() => checkEntry({ kind: 'metric', job: 'j1', peer: 'p1', value: odd })).toThrow(/sketch/)
    // Ours still pass, and still merge.
    expect(() => checkEntry({ kind: 'metric', job: 'j1', peer: 'p1', value: r })).not.toThrow()
    expect(aggregateJob([r, register('p2', [4])]).metrics[0]?.count).toBe(4)
  })
})

describe('faults a red-team review found: a label named __proto__', () => {
  it('is dropped and counted, not silently merged into the series without it', () => {
    expect(parseMetricLine('{"name":"rows","value":1,"labels":{"__proto__":"p","a":"1"}}')).toMatch(
      /bad label name/
    )
    const intake = new MetricsIntake()
    intake.write(Buffer.from('{"name":"rows","value":2,"labels":{"__proto__":"p"}}\n'))
    intake.end()
    expect(intake.result()).toEqual({ metricsDropped: 1 })
  })
})
