import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { JobMetric } from '../core/metrics.ts'
import type { PoolStats } from '../worker/pool.ts'

/** The daemon's Prometheus metrics (exported at GET /metrics). */
export class Metrics {
  readonly registry = new Registry()
  readonly tries = new Counter({
    name: 'shoal_fragment_tries_total',
    help: 'Fragment tries run on this daemon, by result',
    labelNames: ['result'] as const,
    registers: [this.registry]
  })
  readonly tryDuration = new Histogram({
    name: 'shoal_fragment_try_seconds',
    help: 'Duration of fragment tries on this daemon',
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
  readonly stalls: Gauge
  readonly peers: Gauge<'state'>
  readonly jobs: Gauge<'state'>

  constructor(collect: {
    running: () => number
    stalls: () => number
    overshoot: () => number
    rejected: () => number
    peers: () => Record<string, number>
    jobs: () => Record<string, number>
    writable: () => boolean
    pools: () => PoolStats[]
    /** Task metrics of the jobs not yet compacted, over the mesh. */
    taskMetrics: () => Array<{ job: string; metric: JobMetric }>
    /** Task metric values dropped here since start. */
    metricsDropped: () => number
    /** Per tenant (configured, or with jobs): its fragments RUNNING across the mesh, and its largest excess over maxRunning seen here. */
    tenants: () => Array<{ tenant: string; running: number; overshoot: number }>
  }) {
    // Task metrics (GET /v1/jobs/:id/metrics), one series per job, task, metric and labels. The
    // task's labels differ from task to task, and a Prometheus metric's label names are fixed:
    // they go as one label, `k=v,…`, with `\`, `,` and `=` escaped by a backslash. Computed
    // once per scrape (each gauge below asks).
    let scrape: { at: number; rows: Array<{ job: string; metric: JobMetric }> } | undefined
    const rows = (): Array<{ job: string; metric: JobMetric }> => {
      const now = performance.now()
      if (scrape === undefined || now - scrape.at > 1000) scrape = { at: now, rows: collect.taskMetrics() }
      return scrape.rows
    }
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
    const labelNames = ['job', 'task', 'metric', 'labels'] as const
    const esc = (s: string): string => s.replace(/[\\,=]/g, (c) => `\\${c}`)
    const labelsOf = (job: string, m: JobMetric) => ({
      job,
      task: m.task,
      metric: m.name,
      labels: Object.entries(m.labels)
        .map(([k, v]) => `${esc(k)}=${esc(v)}`)
        .join(',')
    })
    for (const [name, help, value] of taskSeries) {
      new Gauge({
        name,
        help,
        labelNames,
        registers: [this.registry],
        collect() {
          this.reset()
          for (const { job, metric } of rows()) {
            const v = value(metric)
            if (v !== null) this.set(labelsOf(job, metric), v)
          }
        }
      })
    }
    new Gauge({
      name: 'shoal_task_metric_values_dropped',
      help: 'Task metric values dropped on this daemon since start (not JSON, too large, over the limits)',
      registers: [this.registry],
      collect() {
        this.set(collect.metricsDropped())
      }
    })
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
      ['shoal_pool_arrivals_per_second', 'Recent arrival rate of a task’s fragments', (p) => p.ratePerSecond],
      [
        'shoal_pool_scheduled_fragments',
        'Fragments a schedule tick due within seconds brings this daemon (part of the forecast)',
        (p) => p.scheduled
      ],
      ['shoal_pool_warm_hits', 'Fragments that found a warm worker ready (since start)', (p) => p.warmHits],
      ['shoal_pool_cold_starts', 'Fragments that had to start a worker (since start)', (p) => p.coldStarts]
    ]
    for (const [name, help, value] of pools) {
      new Gauge({
        name,
        help,
        labelNames: ['task', 'kind'] as const,
        registers: [this.registry],
        collect() {
          this.reset()
          for (const p of collect.pools()) this.set({ task: p.task, kind: p.kind }, value(p))
        }
      })
    }
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
    new Gauge({
      name: 'shoal_tenant_running_fragments',
      help: 'Fragments of each tenant RUNNING across the mesh, as this daemon sees them',
      labelNames: ['tenant'],
      registers: [this.registry],
      collect() {
        this.reset()
        for (const t of collect.tenants()) this.set({ tenant: t.tenant }, t.running)
      }
    })
    new Gauge({
      name: 'shoal_tenant_max_running_overshoot',
      help: 'Largest number of live RUNNING fragments beyond a tenant’s maxRunning this daemon has seen',
      labelNames: ['tenant'],
      registers: [this.registry],
      collect() {
        this.reset()
        for (const t of collect.tenants()) this.set({ tenant: t.tenant }, t.overshoot)
      }
    })
    new Gauge({
      name: 'shoal_max_concurrency_overshoot',
      help: 'Largest number of RUNNING fragments beyond a job’s maxConcurrency this daemon has seen',
      registers: [this.registry],
      collect() {
        this.set(collect.overshoot())
      }
    })
    new Gauge({
      name: 'shoal_gossip_rejected_total',
      help: 'Gossip messages this daemon rejected as invalid',
      registers: [this.registry],
      collect() {
        this.set(collect.rejected())
      }
    })
    this.stalls = new Gauge({
      name: 'shoal_stalls_total',
      help: 'Times this daemon found itself stalled (event loop blocked) and forgave peer silence',
      registers: [this.registry],
      collect() {
        this.set(collect.stalls())
      }
    })
    this.peers = new Gauge({
      name: 'shoal_peers',
      help: 'Daemons known to this one, by state (self included)',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        this.reset()
        for (const [state, n] of Object.entries(collect.peers())) this.set({ state }, n)
      }
    })
    this.jobs = new Gauge({
      name: 'shoal_jobs',
      help: 'Jobs in the replicated state, by state',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        this.reset()
        for (const [state, n] of Object.entries(collect.jobs())) this.set({ state }, n)
      }
    })
  }
}
