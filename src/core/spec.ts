import { canonical, sha256Hex } from './canonical.ts'

/** A JSON value as it may appear in a job's items. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json }

/** The range form of a job's items: the integers start..end-1. */
export interface ItemRange {
  start: number
  end: number
}

/** A job spec as the user sends it (after schema validation). */
export interface JobSpecInput {
  task: string
  /** An ad-hoc command (argv) instead of a configured task's; only where allowAdHocCommands is on. */
  command?: string[]
  items?: Json[]
  range?: ItemRange
  fragmentSize?: number
  maxConcurrency?: number
  attempts?: number
  retryOn?: number[]
  timeoutSeconds?: number
  priority?: number
  idempotencyKey?: string
  env?: Record<string, string>
  name?: string
  labels?: Record<string, string>
  /** Cancel the rest of the job as soon as one fragment fails for good (default: run them all). */
  failFast?: boolean
  /**
   * What a fragment of several items that fails for good does: `fail` (default), or `bisect`:
   * split in halves like a timed-out one, down to single items, so only the bad items fail.
   */
  onFailure?: OnFailure
}

export type OnFailure = 'fail' | 'bisect'

/**
 * A spec as resolved by the accepting daemon: every default filled in, `fragmentSize` fixed.
 * Every daemon derives the same fragments from this, and never re-derives anything from its own
 * configuration.
 */
export interface ResolvedSpec {
  task: string
  command?: string[]
  items?: Json[]
  range?: ItemRange
  itemCount: number
  fragmentSize: number
  fragmentCount: number
  attempts: number
  retryOn?: number[]
  timeoutSeconds: number
  priority: number
  maxConcurrency?: number
  idempotencyKey?: string
  env: Record<string, string>
  name?: string
  labels?: Record<string, string>
  failFast?: boolean
  onFailure?: OnFailure
}

/** What the accepting daemon knows about the task when it resolves a spec. */
export interface TaskDefaults {
  timeoutSeconds?: number
  /** The task's hint for items per fragment. */
  fragmentSize?: number
}

export const DEFAULT_ATTEMPTS = 3
export const DEFAULT_TIMEOUT_SECONDS = 3600
export const DEFAULT_FRAGMENT_SIZE = 1

/** Number of items a spec describes. */
export function itemCountOf(spec: Pick<JobSpecInput, 'items' | 'range'>): number {
  if (spec.items !== undefined) return spec.items.length
  if (spec.range !== undefined) return Math.max(0, spec.range.end - spec.range.start)
  return 0
}

/** Fill in defaults and fix the fragment size. Pure: same input, same output, on every daemon. */
export function resolveSpec(input: JobSpecInput, task: TaskDefaults): ResolvedSpec {
  const itemCount = itemCountOf(input)
  const fragmentSize = input.fragmentSize ?? task.fragmentSize ?? DEFAULT_FRAGMENT_SIZE
  const resolved: ResolvedSpec = {
    task: input.task,
    itemCount,
    fragmentSize,
    fragmentCount: Math.ceil(itemCount / fragmentSize),
    attempts: input.attempts ?? DEFAULT_ATTEMPTS,
    timeoutSeconds: input.timeoutSeconds ?? task.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS,
    priority: input.priority ?? 0,
    env: input.env ?? {}
  }
  if (input.command !== undefined) resolved.command = [...input.command]
  if (input.items !== undefined) resolved.items = input.items
  if (input.range !== undefined) resolved.range = { start: input.range.start, end: input.range.end }
  if (input.retryOn !== undefined) resolved.retryOn = [...input.retryOn].sort((a, b) => a - b)
  if (input.maxConcurrency !== undefined) resolved.maxConcurrency = input.maxConcurrency
  if (input.idempotencyKey !== undefined) resolved.idempotencyKey = input.idempotencyKey
  if (input.name !== undefined) resolved.name = input.name
  if (input.labels !== undefined) resolved.labels = input.labels
  // Defaults stay absent, so specs written before these fields hash as they did.
  if (input.failFast === true) resolved.failFast = true
  if (input.onFailure === 'bisect') resolved.onFailure = 'bisect'
  return resolved
}

/** Hash of a resolved spec's canonical form. Fragment registers are keyed by it. */
export function specHashOf(spec: ResolvedSpec): string {
  return sha256Hex(canonical(spec)).slice(0, 32)
}

/** The job id of an idempotent submission: a hash of the canonical pair [tenant, key]. */
export function idempotentJobId(tenant: string, key: string): string {
  return `k${sha256Hex(canonical([tenant, key])).slice(0, 25)}`
}
