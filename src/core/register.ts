import { canonical, compareStrings, hash53 } from './canonical.ts'
import type { ResolvedSpec } from './spec.ts'

/**
 * Replicated registers and their merges. Every merge here is a join: commutative, associative
 * and idempotent (property-tested in test/unit/core/register.test.ts), and every "highest wins"
 * order is total, its last key comparing canonical bytes, so replicas that received the same
 * registers in any order, with any duplicates, hold the same value.
 */

/** Phases a fragment claim can be in. SUCCEEDED, SPLIT and FAILED are terminal. */
export type Phase = 'RUNNABLE' | 'RUNNING' | 'SUCCEEDED' | 'SPLIT' | 'FAILED'

/** Why a fragment try ended badly. */
export type StatusReason =
  | 'EXIT_CODE'
  | 'TIMEOUT'
  | 'HOST_LOST'
  | 'CANCELLED'
  | 'OUTPUT_TOO_LARGE'
  | 'SPAWN_ERROR'

/** A content-addressed blob: the sha256 (hex) of its bytes, and their number. */
export interface BlobRef {
  sha256: string
  bytes: number
}

/** The result of a try that ran to its end. */
export interface Outcome {
  exitCode: number | null
  signal?: string
  bytes: number
  sha256: string
  /** The fragment's stdout, inline (small outputs of succeeded tries). */
  output?: string
  /**
   * The fragment's stdout is the blob named `sha256` (`bytes` long), held by the daemon that ran
   * the try and copied to others (docs/decisions/014). Only on succeeded tries.
   */
  blob?: true
  /** The tail of the fragment's stderr, for people. */
  log?: string
}

/** A part of a job's output: inline text, or a blob of a fragment's stdout. */
export type OutputPart = string | BlobRef

/** The blob holding a succeeded claim's output, if it is not inline. */
export function outputBlob(claim: Claim | null | undefined): BlobRef | undefined {
  const o = claim?.outcome
  if (claim?.phase !== 'SUCCEEDED' || o?.blob !== true) return undefined
  return { sha256: o.sha256, bytes: o.bytes }
}

/** One ended try of a fragment, kept in its claim's history (`Claim.tries`). */
export interface TryRecord {
  attempt: number
  /** The retry round it ran in (absent: 0); attempts count from 1 again in each round. */
  generation?: number
  epoch: number
  /** The daemon that ran it. */
  holder: string
  exitCode: number | null
  /** Why it ended badly (HOST_LOST: its daemon was lost while it ran); absent: it succeeded. */
  reason?: StatusReason
  /** Wall-clock ms, for display. */
  startedAt?: number
  finishedAt?: number
  /** The tail of its stderr (up to TRY_LOG_BYTES). */
  log?: string
  /** Its whole stderr, when the tail does not hold all of it. */
  logBlob?: BlobRef
}

/** Tries kept per fragment (the newest), and stderr kept per try, inline in the register. */
export const MAX_TRIES_KEPT = 20
export const TRY_LOG_BYTES = 2048

/** The history with one more try, bounded (oldest dropped first). */
export function withTry(tries: readonly TryRecord[] | undefined, t: TryRecord): TryRecord[] {
  const all = [...(tries ?? []), t]
  return all.slice(Math.max(0, all.length - MAX_TRIES_KEPT))
}

/** The last `bytes` of a log, on a character boundary. */
export function logTail(log: string, bytes = TRY_LOG_BYTES): string {
  return log.length <= bytes ? log : log.slice(log.length - bytes)
}

/**
 * A claim on a fragment: who runs (or ran) it at which epoch. The higher claim wins (see
 * compareClaims). `seq` orders the progress of one claim (RUNNING → SUCCEEDED, say).
 */
export interface Claim {
  epoch: number
  holder: string
  incarnation: number
  seq: number
  /** The try number, from 1. Failed tries raise it; lost hosts do not. */
  attempt: number
  phase: Phase
  /** How many tries of this fragment were lost with their host. */
  hostLost: number
  /** The fragment's ended tries so far, oldest first (at most MAX_TRIES_KEPT); claims carry it on. */
  tries?: TryRecord[]
  /**
   * The retry round the claim belongs to (POST /retry starts a new one for each failed leaf);
   * claims carry it on. A higher generation beats everything, results included. Absent: 0.
   */
  generation?: number
  /** Why the last try ended badly (on RUNNABLE after a failed try, and on FAILED). */
  reason?: StatusReason
  outcome?: Outcome
  /** Wall-clock times for display only; never used to order anything. */
  startedAt?: number
  finishedAt?: number
}

/** `top` is the highest epoch ever handed out for the fragment; it merges by max. */
export interface FragmentRegister {
  top: number
  claim: Claim | null
}

/**
 * What is left of a finished job after compaction: its final state and counts, and its output
 * unless the config drops it. Once a job register carries this, its fragment registers are
 * absorbed: deleted, and ignored whenever they arrive again, from anyone, ever.
 */
export interface FinishedSummary {
  state: 'SUCCEEDED' | 'FAILED' | 'CANCELLED'
  statusSummary: Record<'RUNNABLE' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED', number>
  /** Leaf fragments at compaction. */
  fragments: number
  startedAt: number | null
  finishedAt: number | null
  /** Wall-clock ms of compaction (for the tombstone's lifetime, never for ordering). */
  compactedAt: number
  /** Output of the leaves in order (inline text or blobs), unless dropped. */
  output?: OutputPart[]
}

const FINISHED_RANK: Record<FinishedSummary['state'], number> = { CANCELLED: 0, FAILED: 1, SUCCEEDED: 2 }

/** Two daemons may compact a job at once: SUCCEEDED > FAILED > CANCELLED, then the smaller hash. */
export function mergeFinished(
  a: FinishedSummary | undefined,
  b: FinishedSummary | undefined
): FinishedSummary | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  const r = FINISHED_RANK[a.state] - FINISHED_RANK[b.state]
  if (r !== 0) return r > 0 ? a : b
  const ca = canonical(a)
  const cb = canonical(b)
  const ha = hash53(ca)
  const hb = hash53(cb)
  if (ha !== hb) return ha < hb ? a : b
  return compareStrings(ca, cb) <= 0 ? a : b
}

/** The replicated record of a job. */
export interface JobRegister {
  id: string
  tenant: string
  spec: ResolvedSpec
  specHash: string
  /** Wall-clock ms of acceptance; merges by min. */
  createdAt: number
  /** Merges by OR. Whether the job is cancelled now: see isCancelled (a retry lifts a cancel). */
  cancelled: boolean
  /** Retries asked so far (POST /retry); merges by max. Absent: 0. */
  retries?: number
  /** `retries` when the job was last cancelled; merges by max. Absent: 0. */
  cancelledRetries?: number
  /** Peer id of the daemon that accepted the winning spec. */
  acceptedBy: string
  /** specHashes of rival specs that lost to this one under the same id. */
  conflicts?: string[]
  /** Set by compaction (see FinishedSummary). */
  finished?: FinishedSummary
  /**
   * Set by a delete (DELETE /v1/jobs/:id): wall-clock ms of the first delete (merges by min;
   * the tombstone's lifetime counts from it). A deleted job always carries `finished` too, so
   * the summary absorbs its fragments as compaction does; the job leaves every list and its
   * output is no longer referenced (docs/decisions/020).
   */
  deleted?: number
  /** The schedule that made the job (its name), and the tick it is for (ms since the epoch). */
  schedule?: string
  scheduledFor?: number
}

/**
 * Is the job cancelled now? A cancel stands until a later retry: the cancel records how many
 * retries there had been, and a retry raises the count past it. (A cancel racing a retry loses.)
 */
export function isCancelled(job: Pick<JobRegister, 'cancelled' | 'retries' | 'cancelledRetries'>): boolean {
  return job.cancelled && (job.cancelledRetries ?? 0) >= (job.retries ?? 0)
}

const PHASE_RANK: Record<Phase, number> = { RUNNABLE: 0, RUNNING: 0, FAILED: 1, SPLIT: 2, SUCCEEDED: 3 }

export function isTerminal(phase: Phase): boolean {
  return PHASE_RANK[phase] > 0
}

/** SUCCEEDED and SPLIT are final whatever the round: they rank above every generation. */
function finalRank(phase: Phase): number {
  return phase === 'SUCCEEDED' || phase === 'SPLIT' ? PHASE_RANK[phase] : 0
}

/** The tie-break value of a claim; the smaller wins. No clock can game it. */
export function claimTieBreak(fragmentKey: string, holder: string, incarnation: number): number {
  return hash53(`${fragmentKey}|${holder}|${incarnation}`)
}

/**
 * Total order on claims of one fragment; > 0 when `a` wins.
 * 0. a success (SUCCEEDED > SPLIT) beats everything: no retry, however stale, undoes one;
 * 1. then the higher generation (a retry round supersedes the failure of the round before);
 * 2. terminal beats non-terminal: SUCCEEDED > SPLIT > FAILED > (RUNNABLE, RUNNING);
 * 3. then the higher epoch;
 * 4. then the smaller tie-break hash(fragmentKey, holder, incarnation);
 * 5. within one claim, the higher seq (progress);
 * 6. last, canonical bytes, so no tie is left open.
 */
export function compareClaims(fragmentKey: string, a: Claim, b: Claim): number {
  const final = finalRank(a.phase) - finalRank(b.phase)
  if (final !== 0) return final
  const gen = (a.generation ?? 0) - (b.generation ?? 0)
  if (gen !== 0) return gen
  const rank = PHASE_RANK[a.phase] - PHASE_RANK[b.phase]
  if (rank !== 0) return rank
  if (a.epoch !== b.epoch) return a.epoch - b.epoch
  if (a.holder !== b.holder || a.incarnation !== b.incarnation) {
    const ta = claimTieBreak(fragmentKey, a.holder, a.incarnation)
    const tb = claimTieBreak(fragmentKey, b.holder, b.incarnation)
    if (ta !== tb) return tb - ta
    const h = compareStrings(b.holder, a.holder)
    if (h !== 0) return h
    if (a.incarnation !== b.incarnation) return a.incarnation - b.incarnation
  }
  if (a.seq !== b.seq) return a.seq - b.seq
  return compareStrings(canonical(a), canonical(b))
}

/**
 * A number that never decreases as a fragment register merges (the SSE ids of a job sum it over
 * the job's registers, see core/events.ts): `top` merges by max, and the winning claim's phase
 * rank only falls when a retry's RUNNABLE claim beats a FAILED one, and that claim's epoch is
 * above the register's top, which rises with it. Changes a user sees may leave it equal (a
 * handed-back fragment); never lower.
 */
export function registerOrder(reg: FragmentRegister | undefined): number {
  if (reg === undefined) return 0
  return reg.top + (reg.claim === null ? 0 : PHASE_RANK[reg.claim.phase])
}

/** Join of two fragment registers. */
export function mergeFragment(
  fragmentKey: string,
  a: FragmentRegister,
  b: FragmentRegister
): FragmentRegister {
  const top = Math.max(a.top, b.top, a.claim?.epoch ?? 0, b.claim?.epoch ?? 0)
  let claim: Claim | null
  if (a.claim === null) claim = b.claim
  else if (b.claim === null) claim = a.claim
  else claim = compareClaims(fragmentKey, a.claim, b.claim) >= 0 ? a.claim : b.claim
  return { top, claim }
}

/**
 * Join of two job registers with the same id. Normally the specs are equal; if two daemons
 * accepted different specs under one idempotency key at once, the smaller specHash wins
 * everywhere and the other is listed under `conflicts`.
 */
export function mergeJob(a: JobRegister, b: JobRegister): JobRegister {
  let winner = a
  let loser = b
  const bySpec = compareStrings(a.specHash, b.specHash)
  if (bySpec > 0 || (bySpec === 0 && compareStrings(canonical(a.acceptedBy), canonical(b.acceptedBy)) > 0)) {
    winner = b
    loser = a
  }
  const conflicts = new Set([...(a.conflicts ?? []), ...(b.conflicts ?? [])])
  if (loser.specHash !== winner.specHash) conflicts.add(loser.specHash)
  conflicts.delete(winner.specHash)
  const merged: JobRegister = {
    id: winner.id,
    tenant: winner.tenant,
    spec: winner.spec,
    specHash: winner.specHash,
    createdAt: Math.min(a.createdAt, b.createdAt),
    cancelled: a.cancelled || b.cancelled,
    acceptedBy: winner.acceptedBy
  }
  const retries = Math.max(a.retries ?? 0, b.retries ?? 0)
  if (retries > 0) merged.retries = retries
  const cancelledRetries = Math.max(a.cancelledRetries ?? 0, b.cancelledRetries ?? 0)
  if (cancelledRetries > 0) merged.cancelledRetries = cancelledRetries
  if (conflicts.size > 0) merged.conflicts = [...conflicts].sort()
  const finished = mergeFinished(a.finished, b.finished)
  if (finished !== undefined) merged.finished = finished
  const deleted = Math.min(a.deleted ?? Number.POSITIVE_INFINITY, b.deleted ?? Number.POSITIVE_INFINITY)
  if (deleted !== Number.POSITIVE_INFINITY) merged.deleted = deleted
  if (winner.schedule !== undefined && winner.scheduledFor !== undefined) {
    merged.schedule = winner.schedule
    merged.scheduledFor = winner.scheduledFor
  }
  return merged
}

/**
 * The fencing token of a claim (`SHOAL_LEASE_EPOCH`): the epoch in the high bits and the top 21
 * bits of the tie-break, inverted, in the low bits, so tokens rise with every re-claim and are
 * ordered like the merge (a claim that wins has the larger token). Two claims of one epoch share
 * a token only if their tie-breaks agree in those 21 bits (odds 2^-21, and only under a race).
 */
export function fencingToken(
  fragmentKey: string,
  claim: Pick<Claim, 'epoch' | 'holder' | 'incarnation'>
): number {
  const high21 = Math.floor(claimTieBreak(fragmentKey, claim.holder, claim.incarnation) / 2 ** 32)
  return claim.epoch * 0x200000 + (0x1fffff - high21)
}

export function fragmentKey(jobId: string, specHash: string, path: string): string {
  return `${FRAGMENT_KEY_PREFIX}${jobId}/${specHash}/${path}`
}

const FRAGMENT_KEY_PREFIX = 'frag/'

/** The prefix every fragment key of a job starts with. */
export function fragmentKeyPrefix(jobId: string): string {
  return `${FRAGMENT_KEY_PREFIX}${jobId}/`
}

/** The parts of a fragment key (job ids, spec hashes and paths hold no `/`). */
export function parseFragmentKey(key: string): { jobId: string; specHash: string; path: string } {
  const [kind, jobId, specHash, path, ...rest] = key.split('/')
  if (`${kind}/` !== FRAGMENT_KEY_PREFIX || path === undefined || rest.length > 0)
    throw new RangeError(`not a fragment key: ${key}`)
  return { jobId: jobId as string, specHash: specHash as string, path }
}
