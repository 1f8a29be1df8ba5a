/**
 * A task as declared in the daemon config: a command (a process per fragment, or with
 * `protocol: "ndjson"` one long-lived process for fragment after fragment), or a module (a
 * function run in a pool of worker threads).
 */
export interface TaskConfig {
  /** argv of a command task. */
  command?: string[]
  /** A persistent command worker: fragments are JSON lines on its stdin, answers on its stdout. */
  protocol?: 'ndjson'
  /** A module task: the module's path (absolute once the config is loaded). */
  module?: string
  /** The module's export to call (default `default`). */
  export?: string
  /** A module task's heap limit per worker thread, MB. */
  maxMemoryMb?: number
  /** Warm workers (threads or persistent processes) kept ready at least, and at most. */
  minWarm?: number
  maxWarm?: number
  /** The task's own environment. */
  env?: Record<string, string>
  /** Default lifespan of a fragment, seconds. */
  timeoutSeconds?: number
  /** Default items per fragment. */
  fragmentSize?: number
  /** Most bytes of stdout a fragment may produce. */
  maxOutputBytes?: number
  /** Most processes a fragment may have at once (cgroup containment only); else the daemon's `maxProcesses`. */
  maxProcesses?: number
  /**
   * The task's network: `host` (the daemon's, the default), `none` (a namespace of its own with
   * only loopback), or the name of a namespace made with `ip netns add` (command tasks only).
   */
  network?: string
  /** Run as this user (the daemon must run as root); resolved to uid/gid when the config loads. */
  user?: string
  uid?: number
  gid?: number
}

/** What a fragment's process learns of itself. */
export interface FragmentContext {
  jobId: string
  path: string
  fragmentCount: number
  attempt: number
  leaseEpoch: number
  peerId: string
}

/**
 * The environment of a task's process: a scrubbed base (just PATH, so argv[0] resolves), then
 * the task's env, the job's env, and the SHOAL_* variables, which nobody else may set.
 */
export function taskEnvironment(
  basePath: string,
  task: TaskConfig,
  jobEnv: Record<string, string>,
  ctx: FragmentContext
): Record<string, string> {
  return {
    PATH: basePath,
    ...task.env,
    ...jobEnv,
    SHOAL_JOB_ID: ctx.jobId,
    SHOAL_FRAGMENT_INDEX: ctx.path.split('.')[0] as string,
    SHOAL_FRAGMENT_PATH: ctx.path,
    SHOAL_FRAGMENT_COUNT: String(ctx.fragmentCount),
    SHOAL_ATTEMPT: String(ctx.attempt),
    SHOAL_LEASE_EPOCH: String(ctx.leaseEpoch),
    SHOAL_PEER_ID: ctx.peerId
  }
}

/** Exit code by which a task says its fenced write was refused: the try records nothing. */
export const EXIT_FENCED = 75
