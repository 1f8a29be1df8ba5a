import {
  type BlobRef,
  type Claim,
  logTail,
  type Outcome,
  type StatusReason,
  type TryRecord,
  withTry
} from './register.ts'
import type { ResolvedSpec } from './spec.ts'
import { EXIT_FENCED } from './task.ts'

/** How a try ended, as the executor saw it. */
export interface TryResult {
  exitCode: number | null
  signal: string | null
  timedOut: boolean
  outputTooLarge: boolean
  spawnError?: string
  outcome: Outcome
  /** The whole stderr, when it is longer than the tail the outcome carries. */
  stderrBlob?: BlobRef
  /** Items in the fragment (a timed-out fragment of more than one is split). */
  items: number
}

/**
 * The claim a finished try writes, at its own epoch with the next seq, so it beats its own
 * RUNNING claim and loses to any newer claim. Pure.
 * - exit 0: SUCCEEDED with the outcome;
 * - timeout of a fragment of 2+ items: SPLIT (no attempt used);
 * - exit 75 (fenced write refused): RUNNABLE again, no attempt used;
 * - other failures: RUNNABLE with attempt + 1 while attempts (and retryOn) allow, else FAILED
 *   (or, with onFailure bisect and 2+ items, SPLIT).
 */
export function claimAfterTry(
  running: Claim,
  spec: Pick<ResolvedSpec, 'attempts' | 'retryOn' | 'onFailure'>,
  r: TryResult,
  wallNow: number
): Claim {
  const base: Claim = { ...running, seq: running.seq + 1, finishedAt: wallNow }
  delete base.reason
  // Every try that ran is recorded in the fragment's history, with the tail of its stderr.
  const record = (reason?: StatusReason): TryRecord[] => {
    const t: TryRecord = {
      attempt: running.attempt,
      epoch: running.epoch,
      holder: running.holder,
      exitCode: r.exitCode
    }
    if (reason !== undefined) t.reason = reason
    if (running.generation !== undefined) t.generation = running.generation
    if (running.startedAt !== undefined) t.startedAt = running.startedAt
    t.finishedAt = wallNow
    if (r.outcome.log !== undefined && r.outcome.log !== '') t.log = logTail(r.outcome.log)
    if (r.stderrBlob !== undefined) t.logBlob = r.stderrBlob
    return withTry(running.tries, t)
  }
  if (!r.timedOut && !r.outputTooLarge && r.spawnError === undefined && r.exitCode === 0) {
    return { ...base, phase: 'SUCCEEDED', outcome: r.outcome, tries: record() }
  }
  // Only a success keeps its output: a failed try's stdout is nobody's result.
  const outcome: Outcome = { ...r.outcome }
  delete outcome.output
  delete outcome.blob
  if (r.timedOut && r.items > 1) return { ...base, phase: 'SPLIT', tries: record('TIMEOUT') }
  if (r.exitCode === EXIT_FENCED && !r.timedOut) {
    const again: Claim = { ...base, phase: 'RUNNABLE' }
    delete again.finishedAt
    return again
  }
  const reason: StatusReason = r.timedOut
    ? 'TIMEOUT'
    : r.outputTooLarge
      ? 'OUTPUT_TOO_LARGE'
      : r.spawnError !== undefined
        ? 'SPAWN_ERROR'
        : 'EXIT_CODE'
  const retryable =
    reason !== 'EXIT_CODE' ||
    spec.retryOn === undefined ||
    (r.exitCode !== null && spec.retryOn.includes(r.exitCode))
  const tries = record(reason)
  if (retryable && running.attempt < spec.attempts) {
    return { ...base, phase: 'RUNNABLE', attempt: running.attempt + 1, reason, outcome, tries }
  }
  // Failed for good: with onFailure bisect, a fragment of several items splits in halves (each
  // with fresh attempts), down to single items, so only the bad items fail.
  if (spec.onFailure === 'bisect' && r.items > 1) return { ...base, phase: 'SPLIT', reason, outcome, tries }
  return { ...base, phase: 'FAILED', reason, outcome, tries }
}
