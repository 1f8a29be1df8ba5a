import { type RankedPeer, rankOfMemo } from './hrw.ts'
import { LeafIndex } from './leaves.ts'
import {
  type Claim,
  type FragmentRegister,
  fragmentKey,
  type JobRegister,
  type TryRecord,
  withTry
} from './register.ts'

/**
 * Claim decisions, pure. A daemon claims only into free slots: first the fragments it ranks
 * first for (rendezvous hashing over live, synced peers), by priority then ascending path; then
 * it steals, by priority then descending path, fragments that stayed unclaimed for
 * rank × stealDelay on its own clock. With one membership view every fragment has exactly one
 * first-ranked peer, so claims do not collide; stealing is what keeps work moving when views
 * differ or a peer is slow.
 */

export interface ClaimContext {
  self: string
  /** Live, synced peers including self, with their capacities. */
  peers: readonly RankedPeer[]
  /**
   * The peers a job's fragments are ranked among (those of `peers` that can run its task; the
   * same array for the same view and task). Absent: all of `peers`.
   */
  peersOf?: (job: JobRegister) => readonly RankedPeer[]
  /** Is the lease of (holder, incarnation) on the fragment `key` still live in this observer's view? */
  leaseLive(holder: string, incarnation: number, key: string): boolean
  /**
   * Monotonic ms when this observer first saw the fragment claimable in its current register
   * (a new register — a failed try, a hand-back — starts a new wait). Unregistered top-level
   * fragments have all been claimable since the job was first seen: the answer for one of them
   * must be the answer for all (the walk for steals relies on it).
   */
  claimableSince(key: string, register: FragmentRegister | undefined, job: JobRegister): number
  /** Wait before re-running a fragment whose last try failed (backoff); none when absent. */
  retryDelayMs?: (target: ClaimTarget) => number
  /**
   * A job's `maxConcurrency`, as this daemon may use it: the peers that own its slots (ranking
   * is among them) and how many more of its fragments this daemon may start now. Absent for
   * jobs without a cap.
   */
  cap?: (job: JobRegister) => { peers: readonly RankedPeer[]; allowance: number } | undefined
  /**
   * Where the walk for own fragments of a job may start, for one membership view (every
   * unregistered top-level fragment below it is another peer's), and where it stopped.
   */
  ownScan?: {
    from(job: JobRegister, peers: readonly RankedPeer[]): number
    reached(job: JobRegister, peers: readonly RankedPeer[], index: number): void
  }
  /**
   * The share of a slot one fragment of the job takes (1 by default): 1/depth for a task whose
   * warm pool queues several fragments per slot (TaskRunner.depth).
   */
  weight?: (job: JobRegister) => number
  /**
   * Fair share between tenants (issue 13): the free slots go to the tenants with work here in
   * turns, each time to the one whose running fragments per weight are fewest across the mesh.
   * Absent: jobs are taken by priority alone, whoever they belong to.
   */
  tenants?: {
    of(job: JobRegister): string
    share(tenant: string): TenantShare
  }
  /** This observer's monotonic clock, ms. */
  now: number
  stealDelayMs: number
}

/** A tenant's standing, as this observer sees it now. */
export interface TenantShare {
  /** Its weight (> 0): running fragments split between tenants in proportion to it. */
  weight: number
  /** Its fragments RUNNING across the mesh. */
  running: number
  /** How many more of its fragments this daemon may start now (its maxRunning share; Infinity without one). */
  allowance: number
}

/** What a new claim needs from the register it replaces. */
export interface ClaimTarget {
  job: JobRegister
  path: string
  key: string
  register: FragmentRegister | undefined
  /** The try number the new claim runs. */
  attempt: number
  /** Tries lost with their host so far, counting the one being replaced. */
  hostLost: number
}

/**
 * Whether a fragment can be claimed now, and with which attempt. A fragment is claimable when
 * nobody claimed it, when its last try failed with attempts left, or when its holder's lease
 * lapsed (then the lost try counts in hostLost, not in attempts).
 */
export function claimability(
  reg: FragmentRegister | undefined,
  leaseLive: ClaimContext['leaseLive'],
  key: string
): { attempt: number; hostLost: number } | null {
  const claim = reg?.claim ?? null
  if (claim === null) return { attempt: 1, hostLost: 0 }
  if (claim.phase === 'RUNNABLE') return { attempt: claim.attempt, hostLost: claim.hostLost }
  if (claim.phase === 'RUNNING' && !leaseLive(claim.holder, claim.incarnation, key)) {
    return { attempt: claim.attempt, hostLost: claim.hostLost + 1 }
  }
  return null
}

/** The register a claim writes: epoch = top + 1, so it beats every claim handed out so far. */
export function newClaim(
  reg: FragmentRegister | undefined,
  holder: string,
  incarnation: number,
  attempt: number,
  hostLost: number,
  wallNow: number
): FragmentRegister {
  const top = Math.max(reg?.top ?? 0, reg?.claim?.epoch ?? 0)
  const claim: Claim = {
    epoch: top + 1,
    holder,
    incarnation,
    seq: 1,
    attempt,
    phase: 'RUNNING',
    hostLost,
    startedAt: wallNow
  }
  // A claim stays in the retry round of the register it replaces, and carries its history on;
  // a try lost with its host (a RUNNING claim replaced) joins the history as HOST_LOST.
  const prev = reg?.claim
  if (prev?.generation !== undefined) claim.generation = prev.generation
  let tries = prev?.tries
  if (prev?.phase === 'RUNNING') {
    const lost: TryRecord = {
      attempt: prev.attempt,
      epoch: prev.epoch,
      holder: prev.holder,
      exitCode: null,
      reason: 'HOST_LOST'
    }
    if (prev.generation !== undefined) lost.generation = prev.generation
    if (prev.startedAt !== undefined) lost.startedAt = prev.startedAt
    tries = withTry(tries, lost)
  }
  if (tries !== undefined) claim.tries = tries
  return { top: top + 1, claim }
}

/** A job as the claim decision sees it. */
export interface ClaimJob {
  job: JobRegister
  frags: ReadonlyMap<string, FragmentRegister>
  /** Its leaf index (ReplicatedState.leaves); built from `frags` when absent. */
  leaves?: LeafIndex
}

/**
 * Choose up to `slots` fragments to claim from `jobs` (which the caller filtered to jobs this
 * daemon can run). Returns them in claim order.
 *
 * The cost follows what is claimable, not the size of the jobs: candidates come from the leaf
 * index (fragments runnable, running or split, and the unregistered top-level ones, counted
 * rather than stored), the walk for own fragments resumes where the last one stopped
 * (`ctx.ownScan`), and the walk for steals looks at a bounded number of candidates per job and
 * none of the unregistered ones before any of them can be stolen.
 */
export function pickClaims(ctx: ClaimContext, jobs: readonly ClaimJob[], slots: number): ClaimTarget[] {
  if (slots <= 0) return []
  const ordered = [...jobs].sort(
    (a, b) =>
      b.job.spec.priority - a.job.spec.priority ||
      a.job.createdAt - b.job.createdAt ||
      (a.job.id < b.job.id ? -1 : 1)
  )
  if (ctx.tenants === undefined) return pickAmong(ctx, ordered, slots, Number.POSITIVE_INFINITY).targets
  // Each tenant's jobs, still in priority order.
  const groups = new Map<string, TenantGroup>()
  for (const j of ordered) {
    const name = ctx.tenants.of(j.job)
    let g = groups.get(name)
    if (g === undefined) {
      const share = ctx.tenants.share(name)
      g = { name, jobs: [], weight: share.weight, load: share.running, allowance: share.allowance }
      groups.set(name, g)
    }
    g.jobs.push(j)
  }
  // Rounds of water-filling: the room is dealt out to the open tenants by their levels (load per
  // weight), each takes what it can of its part, and a tenant that could not fill its part has
  // nothing more here, so it leaves the rest to the others in the next round.
  const out: ClaimTarget[] = []
  const chosen = new Set<string>()
  // A capped job's allowance is for the whole decision: asked once, and spent across rounds.
  const caps = new Map<string, ReturnType<NonNullable<ClaimContext['cap']>>>()
  const taken = new Map<string, number>()
  const cap = ctx.cap
  const inRound: ClaimContext =
    cap === undefined
      ? ctx
      : {
          ...ctx,
          cap: (job) => {
            if (!caps.has(job.id)) caps.set(job.id, cap(job))
            const c = caps.get(job.id)
            return c === undefined ? undefined : { ...c, allowance: c.allowance - (taken.get(job.id) ?? 0) }
          }
        }
  let room = slots
  let open = [...groups.values()].filter((g) => g.allowance > 0)
  while (room > EPSILON && open.length > 0) {
    const parts = waterFill(open, room)
    if (parts.every((p) => p <= EPSILON)) break
    const next: TenantGroup[] = []
    let keep = false
    for (const [i, g] of open.entries()) {
      const part = parts[i] as number
      if (part <= EPSILON) {
        next.push(g)
        continue
      }
      const picked = pickAmong(inRound, g.jobs, part, g.allowance, chosen)
      for (const t of picked.targets) {
        out.push(t)
        chosen.add(t.key)
        taken.set(t.job.id, (taken.get(t.job.id) ?? 0) + 1)
      }
      g.load += picked.targets.length
      g.allowance -= picked.targets.length
      room -= picked.used
      // A tenant whose next fragment needs more room than its part keeps the room, as a job
      // does within a tenant: the room is not dealt out again this time, so a tenant of whole
      // fragments is not starved by one whose small fragments (a warm pool's) fill every gap.
      if (picked.blocked && picked.used <= EPSILON) keep = true
      // Open still if it took its whole part, or took some and stopped only for room (a whole
      // fragment did not fit in what was left of a part).
      const more = picked.used >= part - EPSILON || (picked.short && picked.used > EPSILON)
      if (more && g.allowance > 0) next.push(g)
    }
    if (keep) break
    open = next
  }
  return out
}

/** A tenant's jobs here and its standing, updated as the room is dealt out. */
interface TenantGroup {
  name: string
  jobs: ClaimJob[]
  weight: number
  load: number
  allowance: number
}

/**
 * Deal `room` out to the groups one slot at a time (the last part may be smaller), each to the
 * group at the lowest level (load + parts so far, per weight; ties to the smaller name), never
 * beyond a group's allowance. Returns each group's part, in the order given.
 */
export function waterFill(
  groups: ReadonlyArray<{ name: string; weight: number; load: number; allowance: number }>,
  room: number
): number[] {
  const parts = groups.map(() => 0)
  let left = room
  while (left > EPSILON) {
    let best = -1
    let bestLevel = Number.POSITIVE_INFINITY
    for (const [i, g] of groups.entries()) {
      const part = parts[i] as number
      if (part >= g.allowance) continue
      const level = (g.load + part) / g.weight
      // (A level may be Infinity, for a weight tiny beside the load: such groups tie by name.)
      const name = (groups[best] as { name: string } | undefined)?.name
      if (name === undefined || level < bestLevel || (level === bestLevel && g.name < name)) {
        best = i
        bestLevel = level
      }
    }
    if (best < 0) break
    const step = Math.min(1, left)
    parts[best] = (parts[best] as number) + step
    left -= step
  }
  return parts
}

/**
 * Choose up to `slots` (by weight) and `most` (by count) fragments from `jobs`, in priority order,
 * leaving out those in `exclude` (taken in an earlier round). `used`: the slots they take;
 * `short`: it stopped for lack of room (more may be claimable); `blocked`: an own fragment to
 * claim did not fit in the room (the job keeps the room).
 */
function pickAmong(
  ctx: ClaimContext,
  ordered: readonly ClaimJob[],
  slots: number,
  most: number,
  exclude?: ReadonlySet<string>
): { targets: ClaimTarget[]; used: number; short: boolean; blocked: boolean } {
  // Slots are shared by weight (a queued warm fragment takes part of one); own claims fill
  // them first, steals take what is left.
  const own: Array<{ t: ClaimTarget; w: number }> = []
  const steals: Array<{ t: ClaimTarget; w: number }> = []
  let ownRoom = slots
  let stealRoom = slots
  // Own claims count against `most` as they are found (the walk records how far it got); steals
  // only when they are kept, at the end.
  let ownLeft = most
  let short = false
  let stoppedOwn = false
  for (const { job, frags, leaves: given } of ordered) {
    const w = ctx.weight?.(job) ?? 1
    const cap = ctx.cap?.(job)
    if (cap !== undefined && cap.allowance <= 0) continue
    // A capped job is ranked among its slot owners only, and gives at most `allowance` claims.
    const peers = cap?.peers ?? ctx.peersOf?.(job) ?? ctx.peers
    let budget = cap?.allowance ?? Number.POSITIVE_INFINITY
    const leaves = given ?? new LeafIndex(job.spec.fragmentCount, frags)
    const target = (path: string): ClaimTarget | null => {
      const reg = frags.get(path)
      const key = fragmentKey(job.id, job.specHash, path)
      if (exclude?.has(key) === true) return null
      const c = claimability(reg, ctx.leaseLive, key)
      if (c === null) return null
      const t: ClaimTarget = { job, path, key, register: reg, attempt: c.attempt, hostLost: c.hostLost }
      if (
        reg?.claim?.phase === 'RUNNABLE' &&
        reg.claim.reason !== undefined &&
        ctx.retryDelayMs !== undefined
      ) {
        // A failed try: back off before the retry, on this observer's clock.
        if (ctx.now - ctx.claimableSince(key, reg, job) < ctx.retryDelayMs(t)) return null
      }
      return t
    }
    // Own fragments, in output order, from where the last walk of this view stopped. A job
    // with a fragment to claim that does not fit in the room left keeps the room for itself:
    // no job after it (lower in priority) is looked at. One with nothing to claim leaves it.
    const from = ctx.ownScan?.from(job, peers) ?? 0
    let reached = leaves.fragmentCount
    let blocked = false
    for (const path of inOrder(leaves, from, 'ascending')) {
      if (budget <= 0 || ownLeft <= 0) {
        reached = topOf(path)
        break
      }
      if (rankOfMemo(fragmentKey(job.id, job.specHash, path), ctx.self, peers) !== 0) continue
      const t = target(path)
      if (t === null) continue
      if (ownRoom < w - EPSILON) {
        blocked = true
        reached = topOf(path)
        break
      }
      own.push({ t, w })
      ownRoom -= w
      budget--
      ownLeft--
    }
    ctx.ownScan?.reached(job, peers, reached)
    if (blocked) {
      short = true
      stoppedOwn = true
      break
    }
    // Steal from the other end, so thieves and owners meet in the middle. An unregistered
    // fragment has been claimable since the job was first seen: none before one steal delay.
    if (ownRoom < w - EPSILON || budget <= 0 || ownLeft <= 0) continue
    const far = leaves.freeTopDescending().next().value
    const freeStealable =
      far !== undefined &&
      ctx.now - ctx.claimableSince(fragmentKey(job.id, job.specHash, String(far)), undefined, job) >=
        ctx.stealDelayMs
    let looked = 0
    const scan = STEAL_SCAN + 4 * Math.ceil(slots / w) * peers.length
    for (const path of inOrder(leaves, 0, freeStealable ? 'descending' : 'descending-explicit')) {
      if (stealRoom < w - EPSILON) {
        short = true
        break
      }
      if (budget <= 0 || looked++ >= scan) break
      const rank = rankOfMemo(fragmentKey(job.id, job.specHash, path), ctx.self, peers)
      if (rank === 0) continue
      const t = target(path)
      if (t === null) continue
      if (ctx.now - ctx.claimableSince(t.key, t.register, job) >= rank * ctx.stealDelayMs) {
        steals.push({ t, w })
        stealRoom -= w
        budget--
      }
    }
  }
  const targets: ClaimTarget[] = []
  let room = slots
  for (const { t, w } of [...own, ...steals]) {
    if (room < w - EPSILON) short = true
    if (room < w - EPSILON || targets.length >= most) break
    targets.push(t)
    room -= w
  }
  return { targets, used: slots - room, short, blocked: stoppedOwn }
}

/** Slack in the sums of slot shares (1/3 + 1/3 + 1/3 is not 1 in floating point). */
const EPSILON = 1e-9

/** How many candidates of a job the walk for steals looks at, at least, per tick. */
const STEAL_SCAN = 64

/** The top-level index of a path. */
function topOf(path: string): number {
  const dot = path.indexOf('.')
  return Number(dot < 0 ? path : path.slice(0, dot))
}

/**
 * The leaves that may be claimable (runnable, running, unregistered), in output order or its
 * reverse: the index's explicit candidates merged with its unregistered top-level fragments.
 * `from` skips unregistered top-level fragments below it; 'descending-explicit' leaves them out.
 */
function* inOrder(
  leaves: LeafIndex,
  from: number,
  order: 'ascending' | 'descending' | 'descending-explicit'
): Generator<string> {
  const explicit = leaves.explicitCandidates()
  if (order === 'ascending') {
    let e = 0
    for (const i of leaves.freeTopAscending(from)) {
      while (e < explicit.length && topOf(explicit[e] as string) < i) yield explicit[e++] as string
      yield String(i)
    }
    while (e < explicit.length) yield explicit[e++] as string
    return
  }
  let e = explicit.length - 1
  if (order === 'descending') {
    for (const i of leaves.freeTopDescending()) {
      while (e >= 0 && topOf(explicit[e] as string) > i) yield explicit[e--] as string
      yield String(i)
    }
  }
  while (e >= 0) yield explicit[e--] as string
}

/**
 * How many more fragments under a cap `self` may start now (decision 005; the cap of a job, or
 * a tenant's maxRunning over its jobs, decision 018): no more than the slots it owns minus its
 * own runs, and no more than the cap minus the live RUNNING claims it sees (`live`). `seen`
 * counts every RUNNING claim, live or not.
 */
export function capShare(input: {
  cap: number
  self: string
  owners: readonly RankedPeer[]
  localRunning: number
  /** The capped jobs' RUNNING registers (others are skipped): their fragments, or LeafIndex.runningRegisters(). */
  registers: ReadonlyArray<{ job: JobRegister; frags: Iterable<readonly [string, FragmentRegister]> }>
  leaseLive: ClaimContext['leaseLive']
}): { allowance: number; seen: number; live: number } {
  const mine = input.owners.find((o) => o.id === input.self)?.capacity ?? 0
  let live = 0
  let seen = 0
  for (const { job, frags } of input.registers) {
    for (const [path, reg] of frags) {
      const claim = reg.claim
      if (claim?.phase !== 'RUNNING') continue
      seen++
      if (input.leaseLive(claim.holder, claim.incarnation, fragmentKey(job.id, job.specHash, path))) live++
    }
  }
  return { allowance: Math.min(mine - input.localRunning, input.cap - live), seen, live }
}
