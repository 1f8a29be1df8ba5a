import type { LeafIndex } from './leaves.ts'
import { type FragmentRegister, isCancelled, type JobRegister, type StatusReason } from './register.ts'
import type { ResolvedSpec } from './spec.ts'

/** Fragment states as users see them. */
export type FragmentState = 'RUNNABLE' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED'
/** Job states as users see them. */
export type JobState = 'SUBMITTED' | 'RUNNABLE' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED'

export const FRAGMENT_STATES: readonly FragmentState[] = [
  'RUNNABLE',
  'RUNNING',
  'SUCCEEDED',
  'FAILED',
  'CANCELLED'
]
export const JOB_STATES: readonly JobState[] = [
  'SUBMITTED',
  'RUNNABLE',
  'RUNNING',
  'SUCCEEDED',
  'FAILED',
  'CANCELLED'
]

export interface FragmentView {
  index: number
  path: string
  state: FragmentState
  statusReason: StatusReason | null
  attempt: number
  epoch: number
  peer: string | null
  exitCode: number | null
  startedAt: number | null
  finishedAt: number | null
}

export type StatusSummary = Record<FragmentState, number>

export interface JobView {
  state: JobState
  statusSummary: StatusSummary
  startedAt: number | null
  finishedAt: number | null
}

/**
 * The leaf fragments of a job, in output order, with their registers. A SPLIT fragment is
 * replaced by its two children; anything else (including a SUCCEEDED parent whose children
 * also exist, from a duplicate run that finished whole) is a leaf.
 */
export function leafFragments(
  spec: Pick<ResolvedSpec, 'fragmentCount'>,
  frags: ReadonlyMap<string, FragmentRegister>,
  /** Start at this top-level fragment (the ones before it are left out). */
  from = 0
): Array<[string, FragmentRegister | undefined]> {
  const out: Array<[string, FragmentRegister | undefined]> = []
  const visit = (path: string): void => {
    const reg = frags.get(path)
    if (reg?.claim?.phase === 'SPLIT') {
      visit(`${path}.0`)
      visit(`${path}.1`)
    } else {
      out.push([path, reg])
    }
  }
  for (let i = from; i < spec.fragmentCount; i++) visit(String(i))
  return out
}

/**
 * Whether a job stopped short of its end: cancelled, or failFast and one of its leaves failed
 * for good. The leaves that had not ended then show CANCELLED, and nothing claims them.
 */
export function jobStopped(
  job: Pick<JobRegister, 'cancelled' | 'retries' | 'cancelledRetries' | 'spec'>,
  leaves: ReadonlyArray<readonly [string, FragmentRegister | undefined]>
): boolean {
  if (isCancelled(job)) return true
  return job.spec.failFast === true && leaves.some(([, reg]) => reg?.claim?.phase === 'FAILED')
}

/** What a user sees of one fragment (`stopped`: its job was cancelled or failed fast). */
export function fragmentView(
  path: string,
  reg: FragmentRegister | undefined,
  stopped: boolean
): FragmentView {
  const claim = reg?.claim ?? null
  let state: FragmentState = 'RUNNABLE'
  let statusReason: StatusReason | null = claim?.reason ?? null
  if (claim !== null) {
    if (claim.phase === 'SUCCEEDED') state = 'SUCCEEDED'
    else if (claim.phase === 'FAILED') state = 'FAILED'
    else if (claim.phase === 'RUNNING') state = 'RUNNING'
  }
  if (stopped && (state === 'RUNNABLE' || state === 'RUNNING')) {
    state = 'CANCELLED'
    statusReason = 'CANCELLED'
  }
  if (state === 'SUCCEEDED') statusReason = null
  return {
    index: Number(path.split('.')[0]),
    path,
    state,
    statusReason,
    attempt: claim?.attempt ?? 1,
    epoch: claim?.epoch ?? 0,
    peer: claim?.holder ?? null,
    exitCode: claim?.outcome?.exitCode ?? null,
    startedAt: claim?.startedAt ?? null,
    finishedAt: claim?.finishedAt ?? null
  }
}

export function emptySummary(): StatusSummary {
  return { RUNNABLE: 0, RUNNING: 0, SUCCEEDED: 0, FAILED: 0, CANCELLED: 0 }
}

/**
 * A job's status, computed from its leaf fragments: SUCCEEDED when every leaf succeeded; while
 * any leaf has not ended, RUNNING once one started, RUNNABLE before; once all ended, FAILED if
 * any failed for good, else CANCELLED. A failed leaf does not stop the others (as array jobs
 * with a per-index backoff limit do), unless the spec asks failFast: then the others show
 * CANCELLED and the job is FAILED at once. A cancelled job's unfinished leaves show CANCELLED.
 */
export function jobView(job: JobRegister, frags: ReadonlyMap<string, FragmentRegister>): JobView {
  const f = job.finished
  if (f !== undefined) {
    return {
      state: f.state,
      statusSummary: { ...f.statusSummary },
      startedAt: f.startedAt,
      finishedAt: f.finishedAt
    }
  }
  const summary = emptySummary()
  let startedAt: number | null = null
  let finishedAt: number | null = null
  let started = false
  const leaves = leafFragments(job.spec, frags)
  const stopped = jobStopped(job, leaves)
  for (const [path, reg] of leaves) {
    const v = fragmentView(path, reg, stopped)
    summary[v.state]++
    if (reg?.claim != null) started = true
    if (v.startedAt !== null && (startedAt === null || v.startedAt < startedAt)) startedAt = v.startedAt
    if (v.finishedAt !== null && (finishedAt === null || v.finishedAt > finishedAt)) finishedAt = v.finishedAt
  }
  let state: JobState
  if (summary.SUCCEEDED === leaves.length) state = 'SUCCEEDED'
  else if (summary.RUNNABLE + summary.RUNNING > 0) state = started ? 'RUNNING' : 'RUNNABLE'
  else if (summary.FAILED > 0) state = 'FAILED'
  else state = 'CANCELLED'
  return {
    state,
    statusSummary: summary,
    startedAt,
    finishedAt: isTerminalJobState(state) ? finishedAt : null
  }
}

/**
 * {@link jobView} from the job's leaf index (ReplicatedState.leaves): the same answer without a
 * walk of the fragments (property-tested equal in test/unit/core/leaves.test.ts).
 */
export function jobViewOf(job: JobRegister, index: LeafIndex | undefined): JobView {
  const f = job.finished
  if (f !== undefined || index === undefined) return jobView(job, new Map())
  const counts = index.summary()
  const stopped = isCancelled(job) || (job.spec.failFast === true && counts.FAILED > 0)
  const summary: StatusSummary = { ...counts, CANCELLED: 0 }
  if (stopped) {
    summary.CANCELLED = summary.RUNNABLE + summary.RUNNING
    summary.RUNNABLE = 0
    summary.RUNNING = 0
  }
  const leaves = counts.RUNNABLE + counts.RUNNING + counts.SUCCEEDED + counts.FAILED
  let state: JobState
  if (summary.SUCCEEDED === leaves) state = 'SUCCEEDED'
  else if (summary.RUNNABLE + summary.RUNNING > 0) state = index.anyClaimed ? 'RUNNING' : 'RUNNABLE'
  else if (summary.FAILED > 0) state = 'FAILED'
  else state = 'CANCELLED'
  return {
    state,
    statusSummary: summary,
    startedAt: index.startedAt,
    finishedAt: isTerminalJobState(state) ? index.finishedAt : null
  }
}

/** The job states a job ends in (the one definition; the API, CLI and scheduler ask this). */
export function isTerminalJobState(state: JobState): boolean {
  return state === 'SUCCEEDED' || state === 'FAILED' || state === 'CANCELLED'
}
