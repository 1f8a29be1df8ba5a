import { describe, expect, it } from 'vitest'
import { emptySummary } from '../../../src/core/status.ts'
import { type JobFigures, Metrics } from '../../../src/daemon/metrics.ts'
import type { PoolStats } from '../../../src/worker/pool.ts'

/** A Metrics over figures a test changes between scrapes. */
function metricsOver(now: {
  jobs: JobFigures[]
  rejected?: number
  stalls?: number
  dropped?: number
  pools?: PoolStats[]
}): Metrics {
  return new Metrics({
    version: '9.8.7',
    running: () => 0,
    stalls: () => now.stalls ?? 0,
    overshoot: () => 0,
    rejected: () => now.rejected ?? 0,
    peers: () => ({ alive: 2 }),
    jobs: () => now.jobs,
    tasks: () => ['echo'],
    writable: () => true,
    pools: () => now.pools ?? [],
    taskMetrics: () => [],
    metricsDropped: () => now.dropped ?? 0,
    tenants: () => []
  })
}

const job = (task: string, state: JobFigures['state'], counts: Partial<JobFigures['statusSummary']>) => ({
  task,
  state,
  statusSummary: { ...emptySummary(), ...counts }
})

/** The value of one sample line ("name{labels}"), or undefined when the series is missing. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('daemon metrics', () => {
  it('queue depth and running fragments by task over every job; a task seen keeps its series at 0', async () => {
    const now = {
      jobs: [
        job('echo', 'RUNNING', { RUNNABLE: 5, RUNNING: 2, SUCCEEDED: 1 }),
        job('echo', 'RUNNABLE', { RUNNABLE: 3 }),
        job('sort', 'RUNNING', { RUNNABLE: 1, RUNNING: 4 }),
        job('sort', 'CANCELLED', { CANCELLED: 7 })
      ]
    }
    const m = metricsOver(now)
    let text = await m.registry.metrics()
    expect(sample(text, 'shoal_mesh_queued_fragments{task="echo"}')).toBe(8)
    expect(sample(text, 'shoal_mesh_running_fragments{task="echo"}')).toBe(2)
    expect(sample(text, 'shoal_mesh_queued_fragments{task="sort"}')).toBe(1)
    expect(sample(text, 'shoal_mesh_running_fragments{task="sort"}')).toBe(4)
    expect(sample(text, 'shoal_jobs{state="RUNNING"}')).toBe(2)
    // Every job gone (compacted elsewhere, say): each series stays, at 0, after the scrape cache.
    now.jobs = []
    await new Promise((r) => setTimeout(r, 1100))
    text = await m.registry.metrics()
    for (const task of ['echo', 'sort']) {
      expect(sample(text, `shoal_mesh_queued_fragments{task="${task}"}`)).toBe(0)
      expect(sample(text, `shoal_mesh_running_fragments{task="${task}"}`)).toBe(0)
    }
    for (const state of ['SUBMITTED', 'RUNNABLE', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED'])
      expect(sample(text, `shoal_jobs{state="${state}"}`)).toBe(0)
  })

  it('series at zero are present: every try result, peer state, job state, an offered task with no job', async () => {
    const text = await metricsOver({ jobs: [] }).registry.metrics()
    for (const result of ['success', 'failure', 'timeout', 'aborted'])
      expect(sample(text, `shoal_fragment_tries_total{result="${result}"}`)).toBe(0)
    expect(sample(text, 'shoal_peers{state="alive"}')).toBe(2)
    for (const state of ['suspect', 'dead', 'left'])
      expect(sample(text, `shoal_peers{state="${state}"}`)).toBe(0)
    expect(sample(text, 'shoal_jobs{state="SUCCEEDED"}')).toBe(0)
    expect(sample(text, 'shoal_mesh_queued_fragments{task="echo"}')).toBe(0)
  })

  it('totals are counters, build info names the version and Node.js, process metrics are there', async () => {
    const now = {
      jobs: [],
      rejected: 4,
      stalls: 2,
      dropped: 9,
      pools: [
        {
          task: 'm',
          kind: 'module' as const,
          size: 1,
          busy: 0,
          forecast: 1,
          ratePerSecond: 0,
          scheduled: 0,
          warmHits: 30,
          coldStarts: 3
        } satisfies PoolStats
      ]
    }
    const text = await metricsOver(now).registry.metrics()
    for (const name of [
      'shoal_gossip_rejected_total',
      'shoal_stalls_total',
      'shoal_task_metric_values_dropped_total',
      'shoal_pool_warm_hits_total',
      'shoal_pool_cold_starts_total'
    ])
      expect(text).toContain(`# TYPE ${name} counter`)
    expect(sample(text, 'shoal_gossip_rejected_total')).toBe(4)
    expect(sample(text, 'shoal_stalls_total')).toBe(2)
    expect(sample(text, 'shoal_task_metric_values_dropped_total')).toBe(9)
    expect(sample(text, 'shoal_pool_warm_hits_total{task="m",kind="module"}')).toBe(30)
    expect(sample(text, 'shoal_pool_cold_starts_total{task="m",kind="module"}')).toBe(3)
    expect(sample(text, `shoal_build_info{version="9.8.7",node="${process.version}"}`)).toBe(1)
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0)
    expect(text).toContain('# TYPE nodejs_eventloop_lag_seconds gauge')
    // No gauge named like a counter (promtool refuses them).
    expect(text).not.toMatch(/^# TYPE \S+_total (gauge|untyped)$/m)
  })
})
