import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { JobSummary } from '../core/api.ts'
import { LIVENESS } from '../core/liveness.ts'
import type { JobMetric } from '../core/metrics.ts'
import { JOB_STATES } from '../core/status.ts'
import type { PoolStats } from '../worker/pool.ts'

/** How a try on this daemon ended, as `shoal_fragment_tries_total` labels it. */
export type TryResult = 'success' | 'failure' | 'timeout' | 'aborted'
const TRY_RESULTS: readonly TryResult[] = ['success', 'failure', 'timeout', 'aborted']

/** What a scrape reads of a job: its state, its task and its leaves by state. */
export type JobFigures = Pick<JobSummary, 'state' | 'task' | 'statusSummary'>

/**
 * A reading shared by the series of one scrape: each series' collect asks, the first one reads,
 * and the others within a second get the same answer (one pass over the state per scrape).
 */
function perScrape<T>(read: () => T): () => T {
  let last: { at: number; value: T } | undefined
  return () => {
    const now = performance.now()
    if (last === undefined || now - last.at > 1000) last = { at: now, value: read() }
    return last.value
  }
}

/**
 * The daemon's Prometheus metrics (exported at GET /metrics). Every series with labels from a
 * fixed set (states, results) is present at 0, and a task's series stay once the task was seen,
 * so a rate or an alert never meets a series that vanished at zero.
 */
export class Metrics {
  readonly registry = new Registry()
  readonly tries = new Counter({
    name: 'shoal_fragment_tries_total',
    help: 'Fragment tries run on this daemon, by result (success, failure, timeout, aborted)',
    labelNames: ['result'] as const,
    registers: [this.registry]
  })
  readonly tryDuration = new Histogram({
    name: 'shoal_fragment_try_seconds',
    help: 'Duration of fragment tries on this daemon, in seconds',
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600, 3600],
    registers: [this.registry]
  })
  readonly jobsAccepted = new Counter({
    name: 'shoal_jobs_accepted_total',
    help: 'Jobs accepted by this daemon',
    registers: [this.registry]
  })
  readonly storageFailures = new Counter({
    name: 'shoal_storage_failures_total',
    help: 'Times the state store went out of service for writes (full disk, failed write)',
    registers: [this.registry]
  })
  readonly running: Gauge
  readonly stalls: Counter
  readonly peers: Gauge<'state'>
  readonly jobs: Gauge<'state'>

  constructor(collect: {
    /** The daemon's version (`shoal_build_info`). */
    version: string
    running: () => number
    stalls: () => number
    overshoot: () => number
    rejected: () => number
    peers: () => Record<string, number>
    /** Every job in the replicated state (the whole mesh's). */
    jobs: () => JobFigures[]
    /** The tasks this daemon offers (their series show at 0 before any job of them). */
    tasks: () => string[]
    writable: () => boolean
    pools: () => PoolStats[]
    /** Task metrics of the jobs not yet compacted, over the mesh. */
    taskMetrics: () => Array<{ job: string; metric: JobMetric }>
    /** Task metric values dropped here since start. */
    metricsDropped: () => number
    /** Per tenant (configured, or with jobs): its fragments RUNNING across the mesh, and its largest excess over maxRunning seen here. */
    tenants: () => Array<{ tenant: string; running: number; overshoot: number }>
  }) {
    // Process and Node.js figures (CPU, memory, file descriptors, event loop lag, GC), unprefixed
    // as every Node.js exporter names them.
    collectDefaultMetrics({ register: this.registry })
    // Gauges prom-client names like counters (promtool refuses them); each is the sum over `type`
    // of its by-type gauge, which stays.
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total'
    ])
      this.registry.removeSingleMetric(name)
    new Gauge({
      name: 'shoal_build_info',
      help: 'Always 1: the Shoal version and the Node.js version this daemon runs',
      labelNames: ['version', 'node'] as const,
      registers: [this.registry]
    }).set({ version: collect.version, node: process.version }, 1)
    for (const result of TRY_RESULTS) this.tries.inc({ result }, 0)
    /** A total kept elsewhere (the transport, the membership), exported as a counter. */
    const total = (name: string, help: string, read: () => number): Counter =>
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.reset()
          this.inc(read())
        }
      })
    /**
     * A family of labelled series read from one source at each scrape: one per [name, help,
     * value] row, each set to `value` of every item (null: no series for that item).
     */
    const registry = this.registry
    const family = <T, L extends string>(
      type: 'gauge' | 'counter',
      labelNames: readonly L[],
      items: () => Iterable<readonly [Record<L, string>, T]>,
      rows: ReadonlyArray<readonly [string, string, (t: T) => number | null]>
    ): void => {
      for (const [name, help, value] of rows) {
        const each = (put: (labels: Record<L, string>, v: number) => void): void => {
          for (const [labels, t] of items()) {
            const v = value(t)
            if (v !== null) put(labels, v)
          }
        }
        const options = { name, help, labelNames, registers: [registry] }
        if (type === 'gauge')
          new Gauge({
            ...options,
            collect() {
              this.reset()
              each((labels, v) => this.set(labels, v))
            }
          })
        else
          new Counter({
            ...options,
            collect() {
              this.reset()
              each((labels, v) => this.inc(labels, v))
            }
          })
      }
    }
    // Task metrics (GET /v1/jobs/:id/metrics), one series per job, task, metric and labels. The
    // task's labels differ from task to task, and a Prometheus metric's label names are fixed:
    // they go as one label, `k=v,…`, with `\`, `,` and `=` escaped by a backslash. Computed
    // once per scrape (each gauge below asks).
    const rows = perScrape(collect.taskMetrics)
    const taskSeries: Array<[string, string, (m: JobMetric) => number | null]> = [
      [
        'shoal_task_metric_values',
        'Values a task emitted, per job, task, metric and labels (whole mesh)',
        (m) => m.count
      ],
      ['shoal_task_metric_sum_of_values', 'Sum of the values a task emitted (whole mesh)', (m) => m.sum],
      ['shoal_task_metric_value_min', 'Least value a task emitted (whole mesh)', (m) => m.min],
      ['shoal_task_metric_value_max', 'Greatest value a task emitted (whole mesh)', (m) => m.max],
      [
        'shoal_task_metric_value_p50',
        'Median of the values a task emitted (DDSketch, 1% relative error)',
        (m) => m.p50
      ],
      [
        'shoal_task_metric_value_p90',
        '90th percentile of the values a task emitted (DDSketch, 1%)',
        (m) => m.p90
      ],
      [
        'shoal_task_metric_value_p99',
        '99th percentile of the values a task emitted (DDSketch, 1%)',
        (m) => m.p99
      ]
    ]
    const esc = (s: string): string => s.replace(/[\\,=]/g, (c) => `\\${c}`)
    const labelsOf = (job: string, m: JobMetric) => ({
      job,
      task: m.task,
      metric: m.name,
      labels: Object.entries(m.labels)
        .map(([k, v]) => `${esc(k)}=${esc(v)}`)
        .join(',')
    })
    family(
      'gauge',
      ['job', 'task', 'metric', 'labels'],
      () => rows().map(({ job, metric }) => [labelsOf(job, metric), metric] as const),
      taskSeries
    )
    total(
      'shoal_task_metric_values_dropped_total',
      'Task metric values dropped on this daemon (not JSON, too large, over the limits)',
      collect.metricsDropped
    )
    // Warm pools (module threads, persistent workers), per task: size against the forecast.
    const pools: Array<[string, string, (p: PoolStats) => number]> = [
      [
        'shoal_pool_workers',
        'Warm workers alive for a task (threads or persistent processes)',
        (p) => p.size
      ],
      ['shoal_pool_busy_workers', 'Workers of a task running a fragment now', (p) => p.busy],
      [
        'shoal_pool_forecast_workers',
        'Workers the demand forecast wants ready for a task',
        (p) => p.forecast
      ],
      [
        'shoal_pool_arrivals_per_second',
        "Recent arrival rate of a task's fragments, per second",
        (p) => p.ratePerSecond
      ],
      [
        'shoal_pool_scheduled_fragments',
        'Fragments a schedule tick due within seconds brings this daemon (part of the forecast)',
        (p) => p.scheduled
      ]
    ]
    const poolItems = () => collect.pools().map((p) => [{ task: p.task, kind: p.kind }, p] as const)
    family('gauge', ['task', 'kind'], poolItems, pools)
    const poolTotals: Array<[string, string, (p: PoolStats) => number]> = [
      ['shoal_pool_warm_hits_total', 'Fragments that found a warm worker ready', (p) => p.warmHits],
      ['shoal_pool_cold_starts_total', 'Fragments that had to start a worker', (p) => p.coldStarts]
    ]
    family('counter', ['task', 'kind'], poolItems, poolTotals)
    new Gauge({
      name: 'shoal_storage_writable',
      help: '1 while the state store takes writes, 0 while it is out of service',
      registers: [this.registry],
      collect() {
        this.set(collect.writable() ? 1 : 0)
      }
    })
    this.running = new Gauge({
      name: 'shoal_running_fragments',
      help: 'Fragments running on this daemon',
      registers: [this.registry],
      collect() {
        this.set(collect.running())
      }
    })
    family('gauge', ['tenant'], () => collect.tenants().map((t) => [{ tenant: t.tenant }, t] as const), [
      [
        'shoal_tenant_running_fragments',
        'Fragments of each tenant RUNNING across the mesh, as this daemon sees them',
        (t) => t.running
      ],
      [
        'shoal_tenant_max_running_overshoot',
        "Largest number of live RUNNING fragments beyond a tenant's maxRunning this daemon has seen",
        (t) => t.overshoot
      ]
    ])
    new Gauge({
      name: 'shoal_max_concurrency_overshoot',
      help: "Largest number of RUNNING fragments beyond a job's maxConcurrency this daemon has seen",
      registers: [this.registry],
      collect() {
        this.set(collect.overshoot())
      }
    })
    total('shoal_gossip_rejected_total', 'Gossip messages this daemon rejected as invalid', collect.rejected)
    this.stalls = total(
      'shoal_stalls_total',
      'Times this daemon found itself stalled (event loop blocked) and forgave peer silence',
      collect.stalls
    )
    this.peers = new Gauge({
      name: 'shoal_peers',
      help: 'Daemons known to this one, by state: alive, suspect, dead, left (self included)',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const n = collect.peers()
        for (const state of LIVENESS) this.set({ state }, n[state] ?? 0)
      }
    })
    const jobs = perScrape(collect.jobs)
    this.jobs = new Gauge({
      name: 'shoal_jobs',
      help: 'Jobs in the replicated state (the whole mesh), by state',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const n = new Map(JOB_STATES.map((s) => [s, 0]))
        for (const j of jobs()) n.set(j.state, (n.get(j.state) ?? 0) + 1)
        for (const [state, count] of n) this.set({ state }, count)
      }
    })
    // Per task, over the whole mesh as this daemon's replica sees it: leaves waiting for a slot
    // (a cancelled or failFast-stopped job's are CANCELLED, not waiting) and leaves running. A
    // task keeps its series once seen, at 0 when it has no work.
    const seen = new Set<string>()
    const byTask = perScrape(() => {
      const out = new Map<string, { queued: number; running: number }>()
      for (const task of [...collect.tasks(), ...seen]) out.set(task, { queued: 0, running: 0 })
      for (const j of jobs()) {
        seen.add(j.task)
        const t = out.get(j.task) ?? { queued: 0, running: 0 }
        t.queued += j.statusSummary.RUNNABLE
        t.running += j.statusSummary.RUNNING
        out.set(j.task, t)
      }
      return out
    })
    const perTask: Array<[string, string, (t: { queued: number; running: number }) => number]> = [
      [
        'shoal_mesh_queued_fragments',
        'Fragments of a task waiting to run (RUNNABLE) across the mesh, as this daemon sees them',
        (t) => t.queued
      ],
      [
        'shoal_mesh_running_fragments',
        'Fragments of a task RUNNING across the mesh, as this daemon sees them',
        (t) => t.running
      ]
    ]
    family('gauge', ['task'], () => [...byTask()].map(([task, t]) => [{ task }, t] as const), perTask)
  }
}
