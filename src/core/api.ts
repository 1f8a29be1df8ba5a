/**
 * The shapes of the HTTP API's answers, defined once: the daemon and the API produce them, the
 * client (CLI, tests, bench, chaos) reads them. Pure types. Times are ISO 8601 UTC strings.
 */
import type { ErrorCode } from './errors.ts'
import type { Liveness } from './liveness.ts'
import type { StatusReason } from './register.ts'
import type { FragmentView, JobState, StatusSummary } from './status.ts'
import type { PeerRecord } from './wire.ts'

/** A job: GET /v1/jobs/:id, an element of GET /v1/jobs, the answer of a cancel. */
export interface JobSummary {
  id: string
  /** The tenant that submitted it. */
  tenant: string
  state: JobState
  task: string
  name?: string
  labels?: Record<string, string>
  fragments: number
  items: number
  fragmentSize: number
  priority: number
  statusSummary: StatusSummary
  createdAt: string
  startedAt: string | null
  finishedAt: string | null
  acceptedBy: string
  conflicts?: string[]
  /** True once the job was compacted to a summary (fragments gone, output kept or dropped). */
  compacted?: boolean
  /** The schedule that made the job, and the tick it is for (ISO 8601). */
  schedule?: string
  scheduledFor?: string
}

/** A schedule, as GET /v1/schedules/:name shows it (its jobs: GET /v1/jobs?schedule=NAME). */
export interface ScheduleSummary {
  name: string
  tenant: string
  cron: string
  timezone: string
  template: import('./spec.ts').JobSpecInput
  overlapPolicy: import('./schedule.ts').OverlapPolicy
  startingDeadlineSeconds: number
  paused: boolean
  createdAt: string
  updatedAt: string
  /** The next tick that will fire (ISO 8601); null while paused or when the cron has no more. */
  nextTick: string | null
}

/** The answer of POST /v1/jobs (202): the job, and how its acknowledgement went. */
export interface SubmitAnswer extends JobSummary {
  /** Copies known to hold the job when it was acknowledged. */
  replicas: number
  /** True when an idempotent submission found its job already there. */
  existing: boolean
}

/** A leaf fragment: an element of GET /v1/jobs/:id/fragments, in output order. */
export type FragmentRecord = Omit<FragmentView, 'startedAt' | 'finishedAt'> & {
  /** The items it holds: positions start..end-1 in the job's items. */
  itemRange: { start: number; end: number }
  startedAt: string | null
  finishedAt: string | null
  /** Its ended tries, oldest first (the last 20): who ran each, how it ended, how long it took. */
  tries: TryView[]
}

/** One ended try of a fragment, as the fragment view shows it. */
export interface TryView {
  /** The retry round it ran in (0 before any retry); attempts count from 1 in each round. */
  round: number
  attempt: number
  peer: string
  exitCode: number | null
  /** Why it ended badly; null: it succeeded. */
  reason: StatusReason | null
  startedAt: string | null
  finishedAt: string | null
  durationMs: number | null
}

/** The stderr tail of one try (GET /v1/jobs/:id/fragments/:path/log, body as text/plain). */
export interface TryMeta {
  attempt: number
  peer: string
  exitCode: number | null
  reason: StatusReason | null
}

/** A try's stderr as the client reads it: the whole, where it was kept, else its tail. */
export interface TryLog extends TryMeta {
  text: string
}

/** Bytes an answer streams (a job's output, a try's stderr), and how many there are. */
export interface ByteStream {
  bytes: number
  stream: AsyncIterable<Uint8Array>
}

/** GET /v1/tasks: the tasks the daemons of the mesh offer, as the answering daemon sees them. */
export interface TasksAnswer {
  /** Every task some live daemon runs, by name, with the daemons that run it. */
  tasks: Array<{ name: string; peers: string[] }>
  /** The live daemons that also run ad-hoc commands (`allowAdHocCommands`). */
  adHoc: string[]
}

/** A leaf that failed for good (GET /v1/jobs/:id/failures). */
export interface FailureRecord {
  path: string
  /** The items it held: positions start..end-1 in the job's items (one item with bisect). */
  itemRange: { start: number; end: number }
  attempt: number
  reason: StatusReason | null
  exitCode: number | null
  /** The daemon that ran its last try. */
  peer: string
  /** The tail of the last try's stderr. */
  log: string
}

/** A daemon of the mesh as the answering daemon sees it: an element of GET /v1/peers. */
export type PeerSummary = Pick<
  PeerRecord,
  'peerId' | 'name' | 'multiaddrs' | 'api' | 'running' | 'capacity' | 'incarnation' | 'synced' | 'version'
> & {
  state: Liveness
  /** True for the answering daemon itself. */
  self: boolean
  /** True while an operator has it drained (it claims nothing; see `shoal drain`). */
  draining: boolean
}

/** How a task's processes are held together so that the end of its fragment kills them all. */
export type ContainmentKind = 'cgroup-v2' | 'cgroup-v1' | 'process-group'

/** GET /v1/health. */
/**
 * A daemon's life (Serf's alive, leaving, left, shutdown): `starting` until its mesh and claim
 * loop run; `alive` while it claims; `leaving` while its runs finish after a leave began (no new
 * claims); `left` once everything is recorded or handed back and announced; `stopped` once closed.
 */
export type DaemonState = 'starting' | 'alive' | 'leaving' | 'left' | 'stopped'

export interface Health {
  status: 'ok' | 'degraded'
  /** This daemon's Shoal version. */
  version: string
  state: DaemonState
  peerId: string
  /** Daemons this one sees alive, itself included. */
  peers: number
  connections: number
  synced: boolean
  incarnation: number
  stateDigest: string
  storage: { writable: boolean; failure?: string; message?: string }
  containment: ContainmentKind
  /** Cut off from the mesh: no connection for a while, with bootstrap addresses or peers it had. */
  isolated: boolean
  /** Why it is isolated (one line: the bootstrap refused, no route, a different swarm key, …). */
  isolatedReason?: string
}

/** GET /v1/jobs/:id/output: the text, and whether every fragment had succeeded (a header). */
export interface JobOutput {
  text: string
  complete: boolean
}

/** The answer of the test-only POST /v1/_test/partition. */
export interface PartitionAnswer {
  blocked: string[]
}

/** The body of every error answer. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string }
}

/** The name of the header that tells whether an output is complete. */
export const OUTPUT_COMPLETE_HEADER = 'x-shoal-output-complete'
/** The header of a try's log answer: its attempt, peer, exit code and reason, as JSON. */
export const TRY_HEADER = 'x-shoal-try'

/**
 * The job service as the HTTP API sees it (src/engine/jobs.ts implements it): submit, cancel
 * and the queries, answered for the whole mesh from this daemon's replica.
 */
/** GET /v1/jobs/:id/metrics: one record per (task, metric, labels); `dropped`: values dropped (bad, over limits). */
export interface JobMetrics {
  metrics: import('./metrics.ts').JobMetric[]
  dropped: number
}

/** The schedule service, as the HTTP API uses it (every call on behalf of a tenant). */
export interface SchedulesApi {
  upsert(
    input: import('./schedule.ts').ScheduleInput,
    tenant?: string
  ): Promise<{ schedule: ScheduleSummary; created: boolean }>
  list(tenant?: string): ScheduleSummary[]
  get(name: string, tenant?: string): ScheduleSummary
  pause(name: string, tenant?: string): Promise<ScheduleSummary>
  resume(name: string, tenant?: string): Promise<ScheduleSummary>
  remove(name: string, tenant?: string): Promise<ScheduleSummary>
}

/**
 * Who asks: a tenant, and whether it may see every tenant's work (a token marked admin, or a
 * daemon without tokens). Another tenant's job answers as if it did not exist (404).
 */
export interface Viewer {
  tenant: string
  admin: boolean
}

/** Every call on behalf of a viewer; none given: the daemon itself (sees everything). */
export interface JobsApi {
  submit(input: import('./spec.ts').JobSpecInput, tenant?: string): Promise<SubmitAnswer>
  /** Newest first; `filter.schedule`: the jobs of the viewer's schedule of that name. */
  listJobs(
    state?: import('./status.ts').JobState,
    filter?: { schedule?: string; viewer?: Viewer }
  ): JobSummary[]
  job(id: string, viewer?: Viewer): Promise<JobSummary>
  /**
   * The job's summary and its order on this daemon: a number that never decreases as this
   * daemon learns more of the job (its registers merge upward), which orders its summaries for
   * the SSE ids (see core/events.ts); a compacted job has the highest.
   */
  jobEvent(id: string, viewer?: Viewer): Promise<{ job: JobSummary; order: number }>
  /** The job's task metrics, aggregated over every daemon. */
  metrics(id: string, viewer?: Viewer): Promise<JobMetrics>
  fragments(id: string, viewer?: Viewer): Promise<FragmentRecord[]>
  /**
   * stdout of the job's succeeded leaves, in fragment order, streamed (blobs this daemon lacks
   * come from their holders); `complete` when every leaf succeeded.
   */
  output(id: string, viewer?: Viewer): Promise<ByteStream & { complete: boolean }>
  cancel(id: string, viewer?: Viewer): Promise<JobSummary>
  /**
   * Delete a finished job on every daemon (a tombstone, see docs/decisions/020); answers the
   * job as it was. Deleting a deleted job answers the same again.
   */
  delete(id: string, viewer?: Viewer): Promise<JobSummary>
  /** Run the failed and cancelled fragments again, with a fresh attempt budget. */
  retry(id: string, viewer?: Viewer): Promise<JobSummary>
  /** The leaves that failed for good, with their items, exit code and stderr tail. */
  failures(id: string, viewer?: Viewer): Promise<FailureRecord[]>
  /** The stderr of a fragment's last try, or of its last try of attempt N: whole where kept, else its tail. */
  tryLog(id: string, path: string, attempt?: number, viewer?: Viewer): Promise<TryMeta & ByteStream>
  /** Hear of every change to a job (its register or any fragment). Returns an unsubscribe. */
  onJobChange(listener: (jobId: string) => void): () => void
}
