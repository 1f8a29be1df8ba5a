import { compareStrings, hash53 } from './canonical.ts'

/** A peer as the ranking sees it. */
export interface RankedPeer {
  id: string
  /** Relative weight (its slots); a peer with twice the capacity wins about twice as often. */
  capacity: number
  /** The tasks it runs, and whether it runs ad-hoc commands (absent: anything; see canRun). */
  tasks?: ReadonlySet<string>
  adHoc?: boolean
}

/** Can the peer run a job of this task (or ad-hoc command)? A peer that did not say: yes. */
export function canRun(peer: RankedPeer, spec: { task: string; command?: string[] | undefined }): boolean {
  if (spec.command !== undefined) return peer.adHoc !== false
  return peer.tasks === undefined || peer.tasks.has(spec.task)
}

/** What a job needs of the daemon that runs it: its task's name, or any ad-hoc command. */
export function runsWhat(spec: { task: string; command?: string[] | undefined }): string {
  return spec.command !== undefined ? '\0adhoc' : spec.task
}

/**
 * The peers that can run each task, per membership view: the same array for the same view and
 * task (the rank memo keys on it), every peer's array when all can.
 */
export class RunnersCache {
  private view: readonly RankedPeer[] | undefined
  private readonly byTask = new Map<string, readonly RankedPeer[]>()

  of(
    peers: readonly RankedPeer[],
    spec: { task: string; command?: string[] | undefined }
  ): readonly RankedPeer[] {
    if (peers !== this.view) {
      this.view = peers
      this.byTask.clear()
    }
    const key = runsWhat(spec)
    let runners = this.byTask.get(key)
    if (runners === undefined) {
      const some = peers.filter((p) => canRun(p, spec))
      runners = some.length === peers.length ? peers : some
      this.byTask.set(key, runners)
    }
    return runners
  }
}

const TWO_53 = 2 ** 53

/**
 * Weighted rendezvous score (straw2, as in Ceph): `-capacity / ln(u)` with u uniform in (0, 1)
 * from hash(key, peer). The highest score ranks first. Adding or removing a peer moves only the
 * keys that peer wins or held: about 1/N of them.
 */
export function hrwScore(key: string, peer: RankedPeer): number {
  const u = (hash53(`${key}|${peer.id}`) + 0.5) / TWO_53
  return -Math.max(peer.capacity, 1e-9) / Math.log(u)
}

/** Peers ranked for a key, best first (ties broken by peer id, so the order is total). */
export function rankPeers<P extends RankedPeer>(key: string, peers: readonly P[]): P[] {
  return peers
    .map((p) => ({ p, s: hrwScore(key, p) }))
    .sort((a, b) => b.s - a.s || compareStrings(a.p.id, b.p.id))
    .map((x) => x.p)
}

/** The 0-based rank of `self` for a key among `peers` (which include self), without sorting. */
export function rankOf(key: string, selfId: string, peers: readonly RankedPeer[]): number {
  const self = peers.find((p) => p.id === selfId)
  if (self === undefined) return peers.length
  const mine = hrwScore(key, self)
  let rank = 0
  for (const p of peers) {
    if (p.id === selfId) continue
    const s = hrwScore(key, p)
    if (s > mine || (s === mine && compareStrings(p.id, selfId) < 0)) rank++
  }
  return rank
}

const rankMemo = new WeakMap<readonly RankedPeer[], Map<string, number>>()
const RANK_MEMO_MAX = 100_000

/**
 * {@link rankOf}, remembered per `peers` array: a caller that keeps one array per membership
 * view (the scheduler does) ranks each fragment once per view instead of once per claim scan.
 */
export function rankOfMemo(key: string, selfId: string, peers: readonly RankedPeer[]): number {
  let memo = rankMemo.get(peers)
  // Bounded: a long-stable mesh would otherwise remember every fragment it ever ranked.
  if (memo === undefined || memo.size >= RANK_MEMO_MAX) {
    memo = new Map()
    rankMemo.set(peers, memo)
  }
  const k = `${selfId}\n${key}`
  let rank = memo.get(k)
  if (rank === undefined) {
    rank = rankOf(key, selfId, peers)
    memo.set(k, rank)
  }
  return rank
}

/** The most slots of one job ranked one by one; beyond it a cap exceeds any mesh's capacity. */
export const MAX_RANKED_SLOTS = 4096

/**
 * Who owns the `maxConcurrency` slots of a job (decision 005): slot s belongs to the peer ranked
 * first for `slot/<job>/<s>`. Returns the owners with the number of slots each owns as its
 * capacity (the weight fragments of the job are then ranked with). With one membership view
 * the owned slots add up to the cap (up to MAX_RANKED_SLOTS).
 */
export function slotOwners(jobId: string, cap: number, peers: readonly RankedPeer[]): RankedPeer[] {
  const owned = new Map<RankedPeer, number>()
  const n = Math.min(cap, MAX_RANKED_SLOTS)
  for (let s = 0; s < n; s++) {
    const owner = rankPeers(`slot/${jobId}/${s}`, peers)[0]
    if (owner !== undefined) owned.set(owner, (owned.get(owner) ?? 0) + 1)
  }
  return [...owned].map(([peer, slots]) => ({ ...peer, capacity: slots }))
}

/** A membership signature: equal for equal sets of peers and capacities. */
export function peersSignature(peers: readonly RankedPeer[]): string {
  return peers
    .map(
      (p) => `${p.id}:${p.capacity}:${p.adHoc ?? ''}:${p.tasks === undefined ? '*' : [...p.tasks].join('+')}`
    )
    .sort()
    .join(',')
}

/** Slot owners per job, recomputed only when the membership signature changes. */
export class SlotOwnerCache {
  private readonly byJob = new Map<
    string,
    { peers: readonly RankedPeer[]; sig: string; owners: RankedPeer[] }
  >()

  owners(jobId: string, cap: number, peers: readonly RankedPeer[]): RankedPeer[] {
    let cached = this.byJob.get(jobId)
    // The same array: the same membership (callers keep one array per view); else compare.
    if (cached !== undefined && cached.peers === peers) return cached.owners
    const sig = peersSignature(peers)
    if (cached === undefined || cached.sig !== sig)
      cached = { peers, sig, owners: slotOwners(jobId, cap, peers) }
    else cached = { ...cached, peers }
    this.byJob.set(jobId, cached)
    return cached.owners
  }

  forget(jobId: string): void {
    this.byJob.delete(jobId)
  }
}
