import { canonical, sha256Bytes } from './canonical.ts'
import { LeafIndex } from './leaves.ts'
import { type MetricRegister, mergeMetricRegister } from './metrics.ts'
import { type FragmentRegister, fragmentKey, type JobRegister, mergeFragment, mergeJob } from './register.ts'
import { mergeSchedule, type ScheduleRegister } from './schedule.ts'

/** One replicated register with its address. Deltas, sync frames and the store carry these. */
export type Entry =
  | { kind: 'job'; id: string; value: JobRegister }
  | { kind: 'frag'; job: string; specHash: string; path: string; value: FragmentRegister }
  | { kind: 'sched'; id: string; value: ScheduleRegister }
  | { kind: 'metric'; job: string; peer: string; value: MetricRegister }

/**
 * The storage key of an entry (`job/<id>`, `frag/<job>/<specHash>/<path>`, `sched/<id>`,
 * `metric/<job>/<peer>`).
 */
export function entryKey(entry: Entry): string {
  if (entry.kind === 'frag') return fragmentKey(entry.job, entry.specHash, entry.path)
  if (entry.kind === 'metric') return `metric/${entry.job}/${entry.peer}`
  return `${entry.kind}/${entry.id}`
}

/**
 * The unit of anti-entropy an entry belongs to: its job (a job register and its fragments), or
 * its schedule (schedule ids never equal job ids).
 */
export function entryJob(entry: Entry): string {
  return entry.kind === 'frag' || entry.kind === 'metric' ? entry.job : entry.id
}

const ZERO_DIGEST = Buffer.alloc(32)

/** Test-only seams of the state: deliberate bugs the simulator must catch. Never set in a daemon. */
export interface StateSeams {
  /** Replaces the fragment merge (the simulator plants a merge that lowers `top`). */
  mergeFragment?: typeof mergeFragment
}

/**
 * The replicated state in memory: job and fragment registers, merged on arrival. Pure: no I/O,
 * no clock. It keeps, per job, a digest that is the XOR of the hashes of the job's registers,
 * updated incrementally on every change, so anti-entropy can compare jobs in O(jobs).
 */
export class ReplicatedState {
  readonly jobs = new Map<string, JobRegister>()
  /** Schedules by id, tombstones (deleted) included. */
  readonly schedules = new Map<string, ScheduleRegister>()
  /** Task metrics: job id → daemon → that daemon's aggregates of the job. Kept through compaction. */
  readonly metrics = new Map<string, Map<string, MetricRegister>>()
  private readonly mergeFrag: StateSeams['mergeFragment'] & {}
  /** job id → `${specHash}` → path → register. Fragments may arrive before their job. */
  private readonly frags = new Map<string, Map<string, Map<string, FragmentRegister>>>()
  private readonly digests = new Map<string, Buffer>()
  /** `${job}\n${specHash}` → the leaf index of that spec's fragments, built when first asked. */
  private readonly indexes = new Map<string, LeafIndex>()
  private readonly removed: string[] = []

  constructor(seams: StateSeams = {}) {
    this.mergeFrag = seams.mergeFragment ?? mergeFragment
  }

  /**
   * Merge one entry. Returns the merged entry when the local state changed (so it should be
   * persisted and, when it came from the local daemon, announced), else null.
   */
  merge(entry: Entry): Entry | null {
    if (entry.kind === 'metric') {
      let byPeer = this.metrics.get(entry.job)
      const old = byPeer?.get(entry.peer)
      if (old === entry.value) return null
      const next = old === undefined ? entry.value : mergeMetricRegister(old, entry.value)
      if (old !== undefined && canon(old) === canon(next)) return null
      if (byPeer === undefined) {
        byPeer = new Map()
        this.metrics.set(entry.job, byPeer)
      }
      byPeer.set(entry.peer, next)
      const merged: Entry = { ...entry, value: next }
      this.updateDigest(entry.job, old === undefined ? null : { ...entry, value: old }, merged)
      return merged
    }
    if (entry.kind === 'sched') {
      const old = this.schedules.get(entry.id)
      if (old === entry.value) return null
      const next = old === undefined ? entry.value : mergeSchedule(old, entry.value)
      if (old !== undefined && canon(old) === canon(next)) return null
      this.schedules.set(entry.id, next)
      const merged: Entry = { kind: 'sched', id: entry.id, value: next }
      this.updateDigest(entry.id, old === undefined ? null : { ...merged, value: old }, merged)
      return merged
    }
    if (entry.kind === 'job') {
      const old = this.jobs.get(entry.id)
      // Registers often travel as shared objects (gossip relays, the simulator): merging x into x
      // changes nothing (idempotence, property-tested), so skip the canonical comparison.
      if (old === entry.value) return null
      const next = old === undefined ? entry.value : mergeJob(old, entry.value)
      if (old !== undefined && canon(old) === canon(next)) return null
      this.jobs.set(entry.id, next)
      const merged: Entry = { kind: 'job', id: entry.id, value: next }
      this.updateDigest(entry.id, old === undefined ? null : { ...merged, value: old }, merged)
      if (next.finished !== undefined) this.absorb(entry.id)
      return merged
    }
    // A compacted job's summary absorbs its fragments: they never come back.
    if (this.jobs.get(entry.job)?.finished !== undefined) return null
    let bySpec = this.frags.get(entry.job)
    if (bySpec === undefined) {
      bySpec = new Map()
      this.frags.set(entry.job, bySpec)
    }
    let byPath = bySpec.get(entry.specHash)
    if (byPath === undefined) {
      byPath = new Map()
      bySpec.set(entry.specHash, byPath)
    }
    const old = byPath.get(entry.path)
    if (old !== undefined && old.top === entry.value.top && old.claim === entry.value.claim) return null
    const key = entryKey(entry)
    const next = old === undefined ? entry.value : this.mergeFrag(key, old, entry.value)
    if (old !== undefined && canon(old) === canon(next)) return null
    byPath.set(entry.path, next)
    this.indexes.get(`${entry.job}\n${entry.specHash}`)?.changed(entry.path, old)
    const merged: Entry = { ...entry, value: next }
    this.updateDigest(entry.job, old === undefined ? null : { ...entry, value: old }, merged)
    return merged
  }

  /**
   * What `merge(entry)` would store, without storing it: the merged entry when it would change
   * the state, else null. Lets a caller write a register to disk before it becomes visible.
   */
  preview(entry: Entry): Entry | null {
    if (entry.kind === 'metric') {
      const old = this.metrics.get(entry.job)?.get(entry.peer)
      const next = old === undefined ? entry.value : mergeMetricRegister(old, entry.value)
      if (old !== undefined && canon(old) === canon(next)) return null
      return { ...entry, value: next }
    }
    if (entry.kind === 'sched') {
      const old = this.schedules.get(entry.id)
      const next = old === undefined ? entry.value : mergeSchedule(old, entry.value)
      if (old !== undefined && canon(old) === canon(next)) return null
      return { kind: 'sched', id: entry.id, value: next }
    }
    if (entry.kind === 'job') {
      const old = this.jobs.get(entry.id)
      const next = old === undefined ? entry.value : mergeJob(old, entry.value)
      if (old !== undefined && canon(old) === canon(next)) return null
      return { kind: 'job', id: entry.id, value: next }
    }
    if (this.jobs.get(entry.job)?.finished !== undefined) return null
    const old = this.frags.get(entry.job)?.get(entry.specHash)?.get(entry.path)
    const next = old === undefined ? entry.value : this.mergeFrag(entryKey(entry), old, entry.value)
    if (old !== undefined && canon(old) === canon(next)) return null
    return { ...entry, value: next }
  }

  /** Delete every fragment register of a compacted job (the summary stands for them). */
  private absorb(jobId: string): void {
    const bySpec = this.frags.get(jobId)
    if (bySpec === undefined) return
    for (const [specHash, byPath] of bySpec) {
      for (const [path, value] of byPath) {
        const e: Entry = { kind: 'frag', job: jobId, specHash, path, value }
        this.removeFromDigest(jobId, e)
        this.removed.push(entryKey(e))
      }
    }
    this.frags.delete(jobId)
    for (const specHash of bySpec.keys()) this.indexes.delete(`${jobId}\n${specHash}`)
  }

  /**
   * Forget a job entirely (its tombstone expired). Only safe once no daemon can still hold its
   * fragments: see the tombstone rule in docs/decisions/006.
   */
  dropJob(jobId: string): void {
    const job = this.jobs.get(jobId)
    if (job !== undefined) {
      this.removeFromDigest(jobId, { kind: 'job', id: jobId, value: job })
      this.removed.push(`job/${jobId}`)
      this.jobs.delete(jobId)
    }
    this.absorb(jobId)
    for (const [peer, value] of this.metrics.get(jobId) ?? [])
      this.removed.push(entryKey({ kind: 'metric', job: jobId, peer, value }))
    this.metrics.delete(jobId)
    this.digests.delete(jobId)
  }

  /** Storage keys deleted since the last call (the replica deletes them from the store). */
  takeRemoved(): string[] {
    return this.removed.splice(0)
  }

  /** The register of one fragment of a job's winning spec, if any was written. */
  fragment(jobId: string, path: string): FragmentRegister | undefined {
    const job = this.jobs.get(jobId)
    if (job === undefined) return undefined
    return this.frags.get(jobId)?.get(job.specHash)?.get(path)
  }

  /**
   * The register of one fragment of one spec of a job (a run belongs to the spec it was claimed
   * under, which a rival spec accepted elsewhere may since have beaten).
   */
  register(jobId: string, specHash: string, path: string): FragmentRegister | undefined {
    return this.frags.get(jobId)?.get(specHash)?.get(path)
  }

  /** All fragment registers of the job's winning spec (path → register). */
  fragmentsOf(jobId: string): ReadonlyMap<string, FragmentRegister> {
    const job = this.jobs.get(jobId)
    if (job === undefined) return new Map()
    return this.frags.get(jobId)?.get(job.specHash) ?? new Map()
  }

  /**
   * The leaves of the job's winning spec, kept up to date on every merge: its status and its
   * claimable fragments without a walk of all its fragments. Undefined for an unknown job.
   */
  leaves(jobId: string): LeafIndex | undefined {
    const job = this.jobs.get(jobId)
    if (job === undefined || job.finished !== undefined) return undefined
    const key = `${jobId}\n${job.specHash}`
    let index = this.indexes.get(key)
    if (index === undefined) {
      let bySpec = this.frags.get(jobId)
      if (bySpec === undefined) {
        bySpec = new Map()
        this.frags.set(jobId, bySpec)
      }
      let byPath = bySpec.get(job.specHash)
      if (byPath === undefined) {
        byPath = new Map()
        bySpec.set(job.specHash, byPath)
      }
      index = new LeafIndex(job.spec.fragmentCount, byPath)
      this.indexes.set(key, index)
    }
    return index
  }

  /**
   * Every entry of a job: its register and all its fragment registers (of any spec); or, for a
   * schedule's id, its register.
   */
  entriesOf(jobId: string): Entry[] {
    const out: Entry[] = []
    const schedule = this.schedules.get(jobId)
    if (schedule !== undefined) out.push({ kind: 'sched', id: jobId, value: schedule })
    const job = this.jobs.get(jobId)
    if (job !== undefined) out.push({ kind: 'job', id: jobId, value: job })
    for (const [specHash, byPath] of this.frags.get(jobId) ?? []) {
      for (const [path, value] of byPath) out.push({ kind: 'frag', job: jobId, specHash, path, value })
    }
    for (const [peer, value] of this.metrics.get(jobId) ?? [])
      out.push({ kind: 'metric', job: jobId, peer, value })
    return out
  }

  /**
   * Ids of every job with any register here (including fragments whose job is not known yet),
   * and of every schedule: the units anti-entropy compares.
   */
  jobIds(): string[] {
    return [
      ...new Set([
        ...this.jobs.keys(),
        ...this.frags.keys(),
        ...this.schedules.keys(),
        ...this.metrics.keys()
      ])
    ]
  }

  /** Hex digest of a job's registers (order-free); equal digests mean equal registers. */
  digest(jobId: string): string {
    return (this.digests.get(jobId) ?? ZERO_DIGEST).toString('hex')
  }

  /** Digest of every job, for anti-entropy. */
  digestAll(): Record<string, string> {
    const out: Record<string, string> = {}
    for (const [id, d] of this.digests) out[id] = d.toString('hex')
    return out
  }

  /** One digest over the whole state (for tests, chaos reports and /v1/health). */
  stateDigest(): string {
    const ids = [...this.digests.keys()].sort()
    return sha256Bytes(ids.map((id) => `${id}:${this.digest(id)}`).join('\n'))
      .toString('hex')
      .slice(0, 32)
  }

  private removeFromDigest(jobId: string, e: Entry): void {
    const d = Buffer.from(this.digests.get(jobId) ?? ZERO_DIGEST)
    xorInto(d, entryHash(e))
    this.digests.set(jobId, d)
  }

  private updateDigest(jobId: string, old: Entry | null, next: Entry): void {
    const d = Buffer.from(this.digests.get(jobId) ?? ZERO_DIGEST)
    if (old !== null) xorInto(d, entryHash(old))
    xorInto(d, entryHash(next))
    this.digests.set(jobId, d)
  }
}

/**
 * The canonical text and entry hash of each register object, computed once: a merge compares
 * and hashes the old register and the new, and the old one was the new one of an earlier merge.
 * Sound because a register is never changed once built (every writer builds a new one).
 */
const memo = new WeakMap<object, { text: string; key?: string; hash?: Buffer }>()

function memoOf(value: object): { text: string; key?: string; hash?: Buffer } {
  let m = memo.get(value)
  if (m === undefined) {
    m = { text: canonical(value) }
    memo.set(value, m)
  }
  return m
}

function canon(value: object): string {
  return memoOf(value).text
}

function entryHash(entry: Entry): Buffer {
  const m = memoOf(entry.value)
  const key = entryKey(entry)
  if (m.hash === undefined || m.key !== key) {
    m.key = key
    m.hash = sha256Bytes(`${key}\n${m.text}`)
  }
  return m.hash
}

function xorInto(target: Buffer, other: Buffer): void {
  for (let i = 0; i < target.length; i++) target[i] = (target[i] as number) ^ (other[i] as number)
}
