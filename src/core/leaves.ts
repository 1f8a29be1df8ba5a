import { type FragmentRegister, registerOrder } from './register.ts'

/**
 * The leaf fragments of one job (of one spec), kept up to date register by register, so a
 * job's status and its claimable fragments cost what changed, not the size of the job.
 *
 * A leaf is what {@link leafFragments} walks to: a top-level fragment in range, or a child of a
 * SPLIT fragment that is itself a leaf's parent, which is not itself SPLIT. A top-level leaf
 * without a register is counted, not stored: a job of a million fragments costs nothing here
 * until its fragments are claimed. Everything else is stored by path, by phase.
 *
 * Pure, no clock. ReplicatedState calls `changed` after every merge that changed a register;
 * the property test in test/unit/core/leaves.test.ts holds it equal to a full walk.
 */
export class LeafIndex {
  readonly fragmentCount: number
  private readonly get: (path: string) => FragmentRegister | undefined
  /** Registered top-level fragments in range (their leaves are counted below). */
  private readonly registeredTop = new Set<number>()
  /** The lowest top-level index that may be unregistered (everything below is registered). */
  private lowFree = 0
  /** The highest top-level index that may be unregistered (everything above is registered). */
  private highFree: number
  /** Leaves with a register, by category. */
  private readonly counts = { RUNNABLE: 0, RUNNING: 0, SUCCEEDED: 0, FAILED: 0 }
  /** Leaves whose register holds a claim (the job has started). */
  private claimedLeaves = 0
  /** Registered leaves claimable without a lease check: no claim, or RUNNABLE. */
  private readonly runnable = new Set<string>()
  /** Every register RUNNING, leaf or not (a run a cap must count), whatever its path. */
  private readonly runningAny = new Set<string>()
  /** Leaves RUNNING (claimable once their lease lapses). */
  private readonly running = new Set<string>()
  /** Children of SPLIT fragments with no register yet (unclaimed leaves). */
  private readonly freeChildren = new Set<string>()
  private readonly started = new Extremes()
  private readonly finished = new Extremes()
  /** Sum of registerOrder over every register of the job (leaf or not): it never decreases. */
  private orderSum = 0
  /** The explicit candidates in output order, cached until one of the sets changes. */
  private sortedCache: string[] | null = null

  constructor(fragmentCount: number, frags: ReadonlyMap<string, FragmentRegister>) {
    this.fragmentCount = fragmentCount
    this.highFree = fragmentCount - 1
    this.get = (path) => frags.get(path)
    for (const [path, reg] of frags) {
      if (reg.claim?.phase === 'RUNNING') this.runningAny.add(path)
      this.orderSum += registerOrder(reg)
    }
    for (const path of frags.keys()) {
      const i = topIndex(path)
      if (i === undefined || i >= fragmentCount || this.registeredTop.has(i)) continue
      this.registeredTop.add(i)
      this.walk(path, 1)
    }
    this.advanceLow()
  }

  /** The register at `path` went from `old` to its current value (already in the map). */
  changed(path: string, old: FragmentRegister | undefined): void {
    this.orderSum += registerOrder(this.get(path)) - registerOrder(old)
    if (this.get(path)?.claim?.phase === 'RUNNING') this.runningAny.add(path)
    else this.runningAny.delete(path)
    if (!this.reachable(path)) return
    const i = topIndex(path)
    if (i !== undefined && old === undefined) {
      this.registeredTop.add(i)
      this.advanceLow()
    }
    this.subtree(path, old, -1)
    this.subtree(path, this.get(path), 1)
  }

  /** Leaves by the state a user sees (before a cancel or failFast turns unfinished ones CANCELLED). */
  summary(): { RUNNABLE: number; RUNNING: number; SUCCEEDED: number; FAILED: number } {
    return {
      RUNNABLE: this.counts.RUNNABLE + this.freeTop() + this.freeChildren.size,
      RUNNING: this.counts.RUNNING,
      SUCCEEDED: this.counts.SUCCEEDED,
      FAILED: this.counts.FAILED
    }
  }

  /**
   * How far the job's registers have come on this replica: never lower after a merge, so it
   * orders the job's summaries (see core/events.ts). Equal to a full walk's sum.
   */
  get order(): number {
    return this.orderSum
  }

  /** How many leaves there are. */
  get leafCount(): number {
    const s = this.summary()
    return s.RUNNABLE + s.RUNNING + s.SUCCEEDED + s.FAILED
  }

  /** Has any leaf been claimed? */
  get anyClaimed(): boolean {
    return this.claimedLeaves > 0
  }

  /** Earliest start of a leaf's current claim, or null. */
  get startedAt(): number | null {
    return this.started.min()
  }

  /** Latest end of a leaf's current claim, or null. */
  get finishedAt(): number | null {
    return this.finished.max()
  }

  /** Is `path` a leaf now? */
  isLeaf(path: string): boolean {
    return this.reachable(path) && this.get(path)?.claim?.phase !== 'SPLIT'
  }

  /** Leaves claimable now or once a lease lapses, other than unregistered top-level ones, in output order. */
  explicitCandidates(): readonly string[] {
    if (this.sortedCache === null) {
      this.sortedCache = [...this.runnable, ...this.running, ...this.freeChildren].sort(comparePaths)
    }
    return this.sortedCache
  }

  /** Every register RUNNING now, with its register (leaves and stale runs under a parent that is no longer split). */
  *runningRegisters(): Generator<readonly [string, FragmentRegister]> {
    for (const path of this.runningAny) {
      const reg = this.get(path)
      if (reg !== undefined) yield [path, reg]
    }
  }

  /** Leaves RUNNING now. */
  runningLeaves(): ReadonlySet<string> {
    return this.running
  }

  /** Leaves that failed for good (a retry round's candidates): a walk of the registered leaves only. */
  *failedLeaves(): Generator<string> {
    for (const i of [...this.registeredTop].sort((a, b) => a - b)) yield* this.failedUnder(String(i))
  }

  /** Unregistered top-level indexes in ascending order, from `from`. */
  *freeTopAscending(from = 0): Generator<number> {
    for (let i = Math.max(from, this.lowFree); i < this.fragmentCount; i++)
      if (!this.registeredTop.has(i)) yield i
  }

  /** Unregistered top-level indexes in descending order. */
  *freeTopDescending(): Generator<number> {
    for (let i = this.highFree; i >= this.lowFree; i--) if (!this.registeredTop.has(i)) yield i
  }

  /** Is this top-level index registered? */
  isRegisteredTop(i: number): boolean {
    return this.registeredTop.has(i)
  }

  private *failedUnder(path: string): Generator<string> {
    const reg = this.get(path)
    if (reg?.claim?.phase === 'SPLIT') {
      yield* this.failedUnder(`${path}.0`)
      yield* this.failedUnder(`${path}.1`)
    } else if (reg?.claim?.phase === 'FAILED') yield path
  }

  private freeTop(): number {
    return this.fragmentCount - this.registeredTop.size
  }

  private advanceLow(): void {
    while (this.lowFree < this.fragmentCount && this.registeredTop.has(this.lowFree)) this.lowFree++
    while (this.highFree >= this.lowFree && this.registeredTop.has(this.highFree)) this.highFree--
  }

  private reachable(path: string): boolean {
    const dot = path.lastIndexOf('.')
    if (dot < 0) {
      const i = topIndex(path)
      return i !== undefined && i < this.fragmentCount
    }
    const parent = path.slice(0, dot)
    return this.get(parent)?.claim?.phase === 'SPLIT' && this.reachable(parent)
  }

  /** Add (+1) or remove (-1) the leaves under `path` when its register is `reg`. */
  private subtree(path: string, reg: FragmentRegister | undefined, sign: 1 | -1): void {
    if (reg?.claim?.phase === 'SPLIT') {
      this.walk(`${path}.0`, sign)
      this.walk(`${path}.1`, sign)
    } else this.leaf(path, reg, sign)
  }

  private walk(path: string, sign: 1 | -1): void {
    this.subtree(path, this.get(path), sign)
  }

  private leaf(path: string, reg: FragmentRegister | undefined, sign: 1 | -1): void {
    if (reg === undefined) {
      // An unregistered top-level leaf is counted by freeTop; a child is stored.
      if (path.includes('.')) this.edit(this.freeChildren, path, sign)
      return
    }
    const claim = reg.claim
    const phase = claim?.phase ?? 'RUNNABLE'
    if (phase === 'RUNNING') {
      this.counts.RUNNING += sign
      this.edit(this.running, path, sign)
    } else if (phase === 'SUCCEEDED') this.counts.SUCCEEDED += sign
    else if (phase === 'FAILED') this.counts.FAILED += sign
    else {
      this.counts.RUNNABLE += sign
      this.edit(this.runnable, path, sign)
    }
    if (claim == null) return
    this.claimedLeaves += sign
    if (claim.startedAt !== undefined) this.started.edit(claim.startedAt, sign)
    if (claim.finishedAt !== undefined) this.finished.edit(claim.finishedAt, sign)
  }

  private edit(set: Set<string>, path: string, sign: 1 | -1): void {
    if (sign > 0) set.add(path)
    else set.delete(path)
    this.sortedCache = null
  }
}

/** Output order of fragment paths: by top-level index, then depth first, `.0` before `.1`. */
export function comparePaths(a: string, b: string): number {
  const as = a.split('.')
  const bs = b.split('.')
  for (let i = 0; i < Math.min(as.length, bs.length); i++) {
    const d = Number(as[i]) - Number(bs[i])
    if (d !== 0) return d
  }
  return as.length - bs.length
}

/** The index of a top-level path ("12"), or undefined for a child path or anything else. */
function topIndex(path: string): number | undefined {
  if (!/^(0|[1-9][0-9]*)$/.test(path)) return undefined
  return Number(path)
}

/** A multiset of numbers that answers its min and max, recomputed only after the extreme left. */
class Extremes {
  private readonly n = new Map<number, number>()
  private lo: number | null = null
  private hi: number | null = null
  private stale = false

  edit(v: number, sign: 1 | -1): void {
    const c = (this.n.get(v) ?? 0) + sign
    if (c <= 0) this.n.delete(v)
    else this.n.set(v, c)
    if (sign > 0) {
      if (!this.stale) {
        if (this.lo === null || v < this.lo) this.lo = v
        if (this.hi === null || v > this.hi) this.hi = v
      }
    } else if (c <= 0 && (v === this.lo || v === this.hi)) this.stale = true
  }

  min(): number | null {
    this.refresh()
    return this.lo
  }

  max(): number | null {
    this.refresh()
    return this.hi
  }

  private refresh(): void {
    if (!this.stale) return
    this.lo = null
    this.hi = null
    for (const v of this.n.keys()) {
      if (this.lo === null || v < this.lo) this.lo = v
      if (this.hi === null || v > this.hi) this.hi = v
    }
    this.stale = false
  }
}
