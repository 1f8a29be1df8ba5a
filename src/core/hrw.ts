import { compareStrings, hash53 } from './canonical.ts'

/** A peer as the ranking sees it. */
export interface RankedPeer {
  id: string
  /** Relative weight (its slots); a peer with twice the capacity wins about twice as often. */
  capacity: number
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

/** The most slots of one job ranked one by one; beyond it a cap exceeds any mesh's capacity. */
export const MAX_RANKED_SLOTS = 4096

/**
 * Who owns the `maxConcurrency` slots of a job (decision 005): slot s belongs to the peer ranked
 * first for `slot/<job>/<s>`. Returns the owners with the number of slots each owns as its
 * capacity (the weight fragments of the job are then ranked with). With one membership view
 * the owned slots add up to the cap (up to MAX_RANKED_SLOTS).
 */
export function slotOwners(jobId: string, cap: number, peers: readonly RankedPeer[]): RankedPeer[] {
  const owned = new Map<string, number>()
  const n = Math.min(cap, MAX_RANKED_SLOTS)
  for (let s = 0; s < n; s++) {
    const owner = rankPeers(`slot/${jobId}/${s}`, peers)[0]
    if (owner !== undefined) owned.set(owner.id, (owned.get(owner.id) ?? 0) + 1)
  }
  return [...owned].map(([id, slots]) => ({ id, capacity: slots }))
}

/** A membership signature: equal for equal sets of peers and capacities. */
export function peersSignature(peers: readonly RankedPeer[]): string {
  return peers
    .map((p) => `${p.id}:${p.capacity}`)
    .sort()
    .join(',')
}

/** Slot owners per job, recomputed only when the membership signature changes. */
export class SlotOwnerCache {
  private readonly byJob = new Map<string, { sig: string; owners: RankedPeer[] }>()

  owners(jobId: string, cap: number, peers: readonly RankedPeer[]): RankedPeer[] {
    const sig = peersSignature(peers)
    let cached = this.byJob.get(jobId)
    if (cached === undefined || cached.sig !== sig) {
      cached = { sig, owners: slotOwners(jobId, cap, peers) }
      this.byJob.set(jobId, cached)
    }
    return cached.owners
  }

  forget(jobId: string): void {
    this.byJob.delete(jobId)
  }
}
