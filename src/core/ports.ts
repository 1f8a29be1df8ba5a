import type { MetricBatch } from './metrics.ts'
import type { BlobRef, Claim, JobRegister } from './register.ts'
import type { TaskConfig } from './task.ts'

export type { BlobRef }

/**
 * The ports through which the protocol code (replica, mesh protocol, scheduler, job service)
 * reaches time and task execution. The daemon plugs in the system clock and the child-process
 * executor; the simulator plugs in a virtual clock and simulated tasks, and so runs the very
 * code the daemon ships (docs/decisions/011-one-engine.md). Types only: nothing here does I/O.
 */

/**
 * Content-addressed blobs: fragment outputs and logs too large to travel inside replicated
 * registers (docs/decisions/014). A blob is named by the sha256 of its bytes, so a copy from
 * anywhere is checked by its name, and storing the same bytes twice stores them once. Bytes
 * always stream: no implementation holds a whole blob in memory. On disk in the daemon
 * (store/blob-disk.ts), in memory in tests and the simulator (store/blobs.ts).
 */
export interface BlobStore {
  /**
   * Store the bytes of `source`. Resolves once they are durable under their hash; when
   * `expect` is given and the bytes hash otherwise, nothing is kept and it rejects BLOB_MISMATCH.
   */
  put(source: AsyncIterable<Uint8Array>, expect?: string): Promise<BlobRef>
  /** The blob's size, or undefined when it is not here. */
  size(sha256: string): Promise<number | undefined>
  /** Stream a blob's bytes; rejects BLOB_NOT_FOUND when it is not here. */
  get(sha256: string): AsyncIterable<Uint8Array>
  /** Forget a blob (a no-op when it is not here). */
  delete(sha256: string): Promise<void>
  /** Every blob held here. */
  list(): AsyncIterable<BlobRef>
}

/** Cancels a timer set with `Clock.after` (a no-op once it fired). */
export type Cancel = () => void

export interface Clock {
  /** Monotonic ms, for every duration and timeout. */
  now(): number
  /** Wall-clock ms since the epoch: display fields, incarnations, tombstone ages. */
  wallNow(): number
  /** Run `fn` after `ms` (0: as soon as the current work is done). */
  after(ms: number, fn: () => void): Cancel
  /** A uniform draw in [0, 1) (the peer an anti-entropy pull picks). */
  random(): number
}

/** Why a run was stopped before its end; the task runner sees it as its signal's reason. */
/**
 * Why a run was stopped: its claim was lost, its job cancelled (or failed fast), handed back on
 * leave, or handed back by a drain before it got its process (a warm pool's queue).
 */
export type AbortReason = 'lost' | 'cancel' | 'handback' | 'drain'

/** Which fragment try a run is (for fenced resources and for whoever watches runs). */
export interface RunIdentity {
  job: JobRegister
  path: string
  /** The fragment's register key. */
  key: string
  claim: Claim
  /** The claim's fencing token (SHOAL_LEASE_EPOCH). */
  token: number
  /** How many items the fragment holds. */
  items: number
}

/** One run of a task. */
export interface TaskRun {
  /** The task's name and its config: which runner takes it (command, persistent worker, module). */
  taskName: string
  task: TaskConfig
  /** argv of a command task; no shell unless argv[0] is one. Empty for a module task. */
  command: string[]
  /** The complete environment of the child (already scrubbed by the caller). */
  env: Record<string, string>
  /** The fragment's items, as the job gave them (a module task's first argument). */
  items: readonly unknown[]
  /** The items as stdin lines (strings as they are, other values as JSON). */
  lines: string[]
  /** Lifespan; past it: SIGTERM, then SIGKILL after killGraceMs. */
  timeoutMs: number
  killGraceMs: number
  /** Largest stdout kept; beyond it the run is stopped and reported too large. */
  maxOutputBytes: number
  /**
   * stdout up to this many bytes comes back inline (`stdout`); past it the runner streams the
   * whole of it into its blob store instead (`stored`), and never holds it in memory.
   */
  inlineOutputBytes: number
  /** Most processes the run may have at once (with cgroup containment that offers pids.max). */
  maxProcesses?: number
  /** Aborting kills the run at once; its reason is an AbortReason. */
  signal?: AbortSignal
  /**
   * Called once the fragment has its process, thread or worker (a warm pool may queue it before
   * that): a drain hands back only fragments that have not started.
   */
  onStart?: () => void
  /** Run as this user and group (the daemon runs as root). */
  uid?: number
  gid?: number
  /** The fragment try this run is (absent for runs outside the scheduler). */
  fragment?: RunIdentity
}

export interface TaskResult {
  exitCode: number | null
  signal: string | null
  /** stdout, when it stayed inline ('' when `stored`). */
  stdout: string
  /** stdout is in the runner's blob store, named `sha256`, not in `stdout`. */
  stored: boolean
  /** sha256 of stdout, hex. */
  sha256: string
  bytes: number
  /** Last bytes of stderr, for people. */
  stderrTail: string
  /** The whole stderr, in the blob store, when the tail does not hold all of it. */
  stderrBlob?: BlobRef
  timedOut: boolean
  outputTooLarge: boolean
  aborted: boolean
  spawnError?: string
  /**
   * The run could not start for a fault of this host, not of the task (no work dir: a full
   * disk, say). The try should be handed back for another daemon, not counted as an attempt.
   */
  hostFault?: boolean
  durationMs: number
  /** Values the task emitted (checked), by series, and how many it emitted that were dropped (bad, over the limits). */
  metrics?: MetricBatch[]
  metricsDropped?: number
}

/**
 * Where the values of a recorded try go to be aggregated and replicated (task metrics). Only
 * tries whose result is recorded count: a run whose claim was lost, or that was handed back,
 * emitted nothing as far as the job is concerned.
 */
export interface MetricsSink {
  /**
   * `counts`, asked a moment later (once competing results had time to arrive): whether the try
   * is still the fragment's, so its values count. A fragment run twice (a lease taken over under
   * load) counts only the run whose result won.
   */
  add(
    jobId: string,
    task: string,
    batches: readonly MetricBatch[],
    dropped: number,
    counts?: () => boolean
  ): void
}

/** Runs tasks: the child-process executor in the daemon, simulated tasks in the simulator. */
export interface TaskRunner {
  run(run: TaskRun): Promise<TaskResult>
  /**
   * How many fragments of the task (by name) to hold per slot: more than 1 for a warm pool that
   * queues them (DemandForecast.depth); 1, or absent, for a cold process per fragment.
   */
  depth?(taskName: string, task: TaskConfig): number
}

/** The logging the protocol code does (pino's Logger fits; the simulator passes a silent one). */
export interface Log {
  debug(obj: object | string, msg?: string): void
  info(obj: object | string, msg?: string): void
  warn(obj: object | string, msg?: string): void
  error(obj: object | string, msg?: string): void
  child(bindings: Record<string, unknown>): Log
}
