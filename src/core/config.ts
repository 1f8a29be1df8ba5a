import type { TaskConfig } from './task.ts'

/**
 * The settings the protocol code runs on, one definition for the daemon (which adds its own
 * settings: addresses, HTTP, security; see daemon/config.ts) and the simulator (which runs
 * these defaults in virtual time).
 */
export interface EngineConfig {
  /** A name for people; defaults to the host name. */
  name: string
  /** Tasks this daemon runs, by name. A config file's `tasks` replace the embedded ones. */
  tasks: Record<string, TaskConfig>
  /** Allow specs that carry their own command (off by default). */
  allowAdHocCommands: boolean
  /** Fragments run at once on this daemon. */
  capacity: number
  /** Heartbeat period. */
  heartbeatMs: number
  /** Silence after which a peer is suspect; dead after twice this. */
  suspectMs: number
  /** Period of anti-entropy pulls from a random peer. */
  syncIntervalMs: number
  /** Unclaimed this long × rank, a fragment may be taken by a lower-ranked daemon. */
  stealDelayMs: number
  /** Period of the claim loop when nothing wakes it sooner. */
  tickMs: number
  /** Tries lost with their host after which a fragment fails for good. */
  hostLostLimit: number
  /** Grace between SIGTERM and SIGKILL of a task. */
  killGraceMs: number
  /** On leaving (SIGINT/SIGTERM), how long running fragments may finish before they are handed back. */
  shutdownGraceMs: number
  /** Default cap on one fragment's stdout. */
  maxOutputBytes: number
  /** A succeeded fragment's stdout up to this size travels inline in its register; larger, as a blob. */
  inlineOutputBytes: number
  /** Daemons that hold a copy of each output blob (the runner included), where that many are live. */
  outputReplicas: number
  /** Period of the output keeper's check: copies to make, blobs no register references. */
  blobCheckMs: number
  /** How long a blob no register references is kept before it is deleted. */
  blobGraceMs: number
  /** Default cap on the processes of one fragment (pids.max of its cgroup, where cgroups are used). */
  maxProcesses: number
  /** Largest accepted job, in items. */
  maxItemsPerJob: number
  /** Largest accepted job, in fragments. */
  maxFragmentsPerJob: number
  /** Delay used to batch state changes into one gossip message. */
  deltaBatchMs: number
  /** Backoff before the first retry of a failed fragment; doubles per attempt (±25% jitter). */
  retryBackoffMs: number
  /** Longest retry backoff. */
  retryBackoffMaxMs: number
  /** How long a finished job keeps its fragments before it is compacted to a summary. */
  retainFinishedMs: number
  /** How long a compacted job's summary (its tombstone) is kept; at least the idempotency window. */
  tombstoneDays: number
  /** Whether a compacted job keeps its output (up to 1 MiB; larger output is dropped). */
  compactedOutput: 'keep' | 'drop'
  /** Copies of a job (this daemon included) synced to disk before its 202. */
  ackReplicas: number
  /** Longest wait for other daemons' acknowledgements of a new job. */
  ackTimeoutMs: number
  /**
   * How long each daemon after the first in a schedule tick's ranking waits before it fires the
   * tick itself (the first fires at the tick).
   */
  scheduleStepMs: number
  /** How often the task metrics of tries recorded here are written and gossiped, as aggregates. */
  metricsFlushMs: number
  /** Tenants' shares and limits, by tenant name (the names of `apiTokens`). */
  tenants: Record<string, TenantConfig>
}

/** A tenant's share and limits (issue 13). Absent: weight 1, no limit. */
export interface TenantConfig {
  /** Its share of the mesh's running fragments while others have work too (1 by default). */
  weight?: number
  /**
   * Most of its fragments running at once across the mesh (enforced like maxConcurrency, through
   * slots owned by rendezvous: decision 018); past it, its fragments wait.
   */
  maxRunning?: number
  /** Most of its jobs not yet finished; a submit past it gets 429 QUOTA_EXCEEDED. */
  maxActiveJobs?: number
  /** Most items in one of its jobs; past it, 429 QUOTA_EXCEEDED. */
  maxItemsPerJob?: number
  /** Sees (and may cancel) every tenant's jobs. */
  admin?: boolean
}

/** Defaults of every engine setting but the daemon-specific name and tasks. */
export const ENGINE_DEFAULTS: Omit<EngineConfig, 'name' | 'tasks' | 'allowAdHocCommands'> = {
  capacity: 4,
  heartbeatMs: 250,
  suspectMs: 1000,
  syncIntervalMs: 5000,
  stealDelayMs: 1000,
  tickMs: 250,
  hostLostLimit: 3,
  killGraceMs: 5000,
  shutdownGraceMs: 30_000,
  maxOutputBytes: 1024 * 1024 * 1024,
  inlineOutputBytes: 16 * 1024,
  outputReplicas: 2,
  blobCheckMs: 5000,
  blobGraceMs: 60_000,
  maxProcesses: 512,
  maxItemsPerJob: 1_000_000,
  maxFragmentsPerJob: 100_000,
  deltaBatchMs: 10,
  ackReplicas: 2,
  ackTimeoutMs: 2000,
  scheduleStepMs: 1000,
  metricsFlushMs: 500,
  tenants: {},
  retryBackoffMs: 1000,
  retryBackoffMaxMs: 60_000,
  retainFinishedMs: 86_400_000,
  tombstoneDays: 30,
  compactedOutput: 'keep'
}

/** Longest wait for one anti-entropy pull (and, once connected, for the first one). */
export const PULL_TIMEOUT_MS = 30_000

/** How long a daemon that may have peers waits to hear from one before it claims alone. */
export function syncGraceMs(config: Pick<EngineConfig, 'suspectMs'>): number {
  return Math.max(2 * config.suspectMs, 2000)
}
