import {
  type Claim,
  compareClaims,
  type FragmentRegister,
  fragmentKey,
  isTerminal,
  type JobRegister
} from '../core/register.ts'
import type { Entry, ReplicatedState } from '../core/state.ts'
import { isTerminalJobState, jobStopped, jobView, leafFragments } from '../core/status.ts'

/**
 * The simulator's invariants. Two kinds: step checks, run on every register change at every
 * daemon while the run goes on (top and the winning claim never go back; a fencing token is
 * handed to one claim only), and final checks, run once everything healed and went quiet (no
 * acknowledged job lost, replicas equal, one recorded result per leaf, no result from nowhere).
 */

export type ViolationKind =
  | 'top-decreased'
  | 'claim-regressed'
  | 'epoch-above-top'
  | 'job-regressed'
  | 'fencing-token-reused'
  | 'acked-job-lost'
  | 'replicas-differ'
  | 'leaf-not-terminal'
  | 'job-not-terminal'
  | 'result-disagreement'
  | 'phantom-result'
  | 'not-quiescent'
  | 'output-lost'
  | 'dead-peer-revived'
  | 'schedule-tick'
  | 'drained-claim'
  | 'deleted-job-returned'
  | 'exception'

export interface Violation {
  kind: ViolationKind
  /** Virtual ms. */
  at: number
  daemon?: string
  detail: string
}

/**
 * DESIGN: "a dead peer is never judged alive again without a newer heartbeat". Each observer's
 * judgements, as its membership table reports them: once it judged a peer dead on a record
 * (incarnation, seq), leaving dead needs a newer record. A restarted observer starts a fresh
 * table, and can leave dead only after judging dead again in that life, which overwrites the
 * entry here.
 */
export class JudgementLedger {
  private readonly deadOn = new Map<string, { incarnation: number; seq: number }>()

  judged(
    observer: string,
    t: { peerId: string; incarnation: number; seq: number; from: string; to: string }
  ): { kind: ViolationKind; detail: string } | null {
    const key = `${observer}|${t.peerId}`
    if (t.to === 'dead') {
      this.deadOn.set(key, { incarnation: t.incarnation, seq: t.seq })
      return null
    }
    const d = this.deadOn.get(key)
    if (t.from !== 'dead' || d === undefined) return null
    const newer = t.incarnation > d.incarnation || (t.incarnation === d.incarnation && t.seq > d.seq)
    if (newer) return null
    return {
      kind: 'dead-peer-revived',
      detail: `${observer} judged ${t.peerId} ${t.to} again on ${t.incarnation}/${t.seq}, dead since ${d.incarnation}/${d.seq}`
    }
  }
}

/** Who a claim is: the triple that makes it unique (and from which its fencing token derives). */
/**
 * Same claim, same seq and same phase: a redelivery, not a new write. The phase counts: a try
 * lost with its host is failed for good by another daemon at the holder's next seq, the very seq
 * the holder's own result takes if it ran to its end after all (a paused holder): two records.
 */
export function sameClaimRecord(a: Claim, b: Claim): boolean {
  return (
    a.epoch === b.epoch &&
    a.holder === b.holder &&
    a.incarnation === b.incarnation &&
    a.seq === b.seq &&
    a.phase === b.phase
  )
}

export function claimId(c: Pick<Claim, 'holder' | 'incarnation' | 'epoch'>): string {
  return `${c.holder}/${c.incarnation}@${c.epoch}`
}

/**
 * One register change at one daemon: `old` (undefined when new) became `next`. A merge is a
 * join, so nothing may go back: `top` never decreases, the winning claim never loses to the one
 * it replaced, and within one phase rank the winning epoch never decreases. (A terminal claim
 * beats a non-terminal one of a higher epoch by design, e.g. a late SUCCEEDED from a stale
 * holder, or SUCCEEDED over FAILED: "a late success can turn FAILED into SUCCEEDED", so the winner's
 * epoch alone may drop across a change of phase rank; its place in the order never does.)
 */
export function checkFragmentStep(
  key: string,
  old: FragmentRegister | undefined,
  next: FragmentRegister
): { kind: ViolationKind; detail: string } | null {
  if (next.claim !== null && next.claim.epoch > next.top) {
    return { kind: 'epoch-above-top', detail: `${key}: claim epoch ${next.claim.epoch} > top ${next.top}` }
  }
  if (old === undefined) return null
  if (next.top < old.top) return { kind: 'top-decreased', detail: `${key}: top ${old.top} → ${next.top}` }
  if (old.claim === null) return null
  if (next.claim === null) {
    return { kind: 'claim-regressed', detail: `${key}: claim ${claimId(old.claim)} vanished` }
  }
  if (compareClaims(key, next.claim, old.claim) < 0) {
    return {
      kind: 'claim-regressed',
      detail: `${key}: ${claimId(old.claim)} ${old.claim.phase} → ${claimId(next.claim)} ${next.claim.phase}`
    }
  }
  const sameRank =
    (old.claim.generation ?? 0) === (next.claim.generation ?? 0) &&
    (old.claim.phase === next.claim.phase || (!isTerminal(old.claim.phase) && !isTerminal(next.claim.phase)))
  if (sameRank && next.claim.epoch < old.claim.epoch) {
    return { kind: 'claim-regressed', detail: `${key}: epoch ${old.claim.epoch} → ${next.claim.epoch}` }
  }
  return null
}

/**
 * A job register only moves forward too: cancelled stays, retries and the retries a cancel saw
 * only grow, createdAt and the winning specHash only fall.
 */
export function checkJobStep(
  old: JobRegister | undefined,
  next: JobRegister
): { kind: ViolationKind; detail: string } | null {
  if (old === undefined) return null
  if (
    (old.cancelled && !next.cancelled) ||
    (old.deleted !== undefined && next.deleted === undefined) ||
    (next.retries ?? 0) < (old.retries ?? 0) ||
    (next.cancelledRetries ?? 0) < (old.cancelledRetries ?? 0) ||
    next.createdAt > old.createdAt ||
    next.specHash > old.specHash ||
    (old.conflicts ?? []).some((c) => c !== next.specHash && !(next.conflicts ?? []).includes(c))
  ) {
    return { kind: 'job-regressed', detail: `job/${old.id}: ${JSON.stringify({ old, next }).slice(0, 300)}` }
  }
  return null
}

export function checkStep(
  old: Entry | undefined,
  next: Entry
): { kind: ViolationKind; detail: string } | null {
  if (next.kind === 'job') return checkJobStep(old?.kind === 'job' ? old.value : undefined, next.value)
  if (next.kind === 'sched' || next.kind === 'metric') return null
  const key = fragmentKey(next.job, next.specHash, next.path)
  return checkFragmentStep(key, old?.kind === 'frag' ? old.value : undefined, next.value)
}

/**
 * Every fencing token handed out, per fragment. A token is `SHOAL_LEASE_EPOCH`: the external
 * resource a task writes to trusts it to name one claim. Each run start is one claim act, so a
 * token seen twice for one fragment is a violation, even for an identical (holder, incarnation,
 * epoch): two processes would then hold the same token.
 */
export class FencingLedger {
  private readonly byKey = new Map<string, Map<number, string>>()

  /** Record a run start; returns a description of the earlier holder when the token was taken. */
  handOut(key: string, token: number, claim: Claim, daemon: string, at: number): string | null {
    let tokens = this.byKey.get(key)
    if (tokens === undefined) {
      tokens = new Map()
      this.byKey.set(key, tokens)
    }
    const prev = tokens.get(token)
    const desc = `${claimId(claim)} (started by ${daemon} at ${Math.round(at)}ms)`
    if (prev !== undefined) return `${key}: token ${token} handed to ${prev} and again to ${desc}`
    tokens.set(token, desc)
    return null
  }
}

/** A job the simulated client holds a 202 for, with the replicas the answer reported. */
export interface AckedJob {
  id: string
  specHash: string
  acceptedBy: string
  replicas: number
  at: number
}

export interface FinalInput {
  /** Live daemons after healing: id and state. */
  live: ReadonlyArray<{ id: string; state: ReplicatedState }>
  acked: readonly AckedJob[]
  /** Jobs a client deleted (the delete answered). */
  deleted: ReadonlySet<string>
  /** `${key}|${claimId}|${phase}` of every terminal claim a daemon wrote itself (after a run, or HOST_LOST). */
  recorded: ReadonlySet<string>
  at: number
}

/**
 * The checks after healing and quiescence. Returns every violation found (bounded per kind, so a
 * broken run does not flood the report).
 */
export function checkFinal(input: FinalInput): Violation[] {
  const out: Violation[] = []
  const perKind = new Map<ViolationKind, number>()
  const report = (kind: ViolationKind, detail: string, daemon?: string): void => {
    const n = perKind.get(kind) ?? 0
    perKind.set(kind, n + 1)
    if (n < 5) out.push({ kind, at: input.at, detail, ...(daemon !== undefined ? { daemon } : {}) })
  }
  const { live } = input
  if (live.length === 0) return out

  // No acknowledged job lost: every live daemon holds it, under its spec or listing it as a conflict.
  for (const a of input.acked) {
    for (const d of live) {
      const job = d.state.jobs.get(a.id)
      if (job === undefined) {
        report('acked-job-lost', `job ${a.id} (accepted by ${a.acceptedBy}, ${a.replicas} replicas)`, d.id)
      } else if (job.specHash !== a.specHash && !(job.conflicts ?? []).includes(a.specHash)) {
        report('acked-job-lost', `job ${a.id}: spec ${a.specHash} neither won nor listed as a conflict`, d.id)
      }
    }
  }

  // A deleted job never comes back: every live daemon holds its tombstone and none of its
  // fragments (tombstones outlive any run: none expires here).
  for (const id of input.deleted) {
    for (const d of live) {
      const job = d.state.jobs.get(id)
      if (job?.deleted === undefined)
        report(
          'deleted-job-returned',
          `job ${id} is ${job === undefined ? 'unknown' : 'back, not deleted'}`,
          d.id
        )
      else if (d.state.entriesOf(id).some((e) => e.kind === 'frag'))
        report('deleted-job-returned', `job ${id} holds fragments again`, d.id)
    }
  }

  // All replicas equal.
  const ref = live[0] as { id: string; state: ReplicatedState }
  const refDigest = ref.state.stateDigest()
  for (const d of live.slice(1)) {
    if (d.state.stateDigest() !== refDigest) {
      const ids = new Set([...ref.state.jobIds(), ...d.state.jobIds()])
      const differing = [...ids].filter((id) => ref.state.digest(id) !== d.state.digest(id)).sort()
      report(
        'replicas-differ',
        `${ref.id} and ${d.id} differ in jobs ${differing.slice(0, 5).join(', ')}`,
        d.id
      )
    }
  }

  // One recorded result per leaf, agreed by every replica, produced by a real run.
  for (const job of ref.state.jobs.values()) {
    const frags = ref.state.fragmentsOf(job.id)
    const view = jobView(job, frags)
    if (!isTerminalJobState(view.state)) {
      report('job-not-terminal', `job ${job.id} is ${view.state} (${JSON.stringify(view.statusSummary)})`)
    }
    // A compacted job's summary stands for its fragments (their registers are gone everywhere,
    // which the equal digests above show); it must still add up.
    if (job.finished !== undefined) {
      const s = job.finished.statusSummary
      const total = s.RUNNABLE + s.RUNNING + s.SUCCEEDED + s.FAILED + s.CANCELLED
      if (total !== job.finished.fragments || s.RUNNING > 0)
        report(
          'job-not-terminal',
          `job ${job.id} was compacted as ${JSON.stringify(s)} of ${job.finished.fragments}`
        )
      continue
    }
    const leaves = leafFragments(job.spec, frags)
    const stopped = jobStopped(job, leaves)
    for (const [path, reg] of leaves) {
      const key = fragmentKey(job.id, job.specHash, path)
      const claim = reg?.claim ?? null
      if (claim === null || !isTerminal(claim.phase)) {
        // Only a stopped job (cancelled, or failed fast) leaves leaves unfinished: a failed leaf
        // does not stop the others.
        if (!stopped) {
          report('leaf-not-terminal', `${key} is ${claim?.phase ?? 'unclaimed'} in a ${view.state} job`)
        }
      } else if (!input.recorded.has(`${key}|${claimId(claim)}|${claim.phase}`)) {
        report('phantom-result', `${key}: ${claim.phase} by ${claimId(claim)} was never written by a run`)
      }
      for (const d of live.slice(1)) {
        const theirs = d.state.fragmentsOf(job.id).get(path)?.claim ?? null
        if (!sameRecorded(claim, theirs)) {
          report(
            'result-disagreement',
            `${key}: ${ref.id} has ${describe(claim)}, ${d.id} has ${describe(theirs)}`,
            d.id
          )
        }
      }
    }
  }
  return out
}

function sameRecorded(a: Claim | null, b: Claim | null): boolean {
  if (a === null || b === null) return a === b
  return claimId(a) === claimId(b) && a.phase === b.phase && a.seq === b.seq
}

function describe(c: Claim | null): string {
  return c === null ? 'nothing' : `${c.phase} ${claimId(c)} seq ${c.seq}`
}
