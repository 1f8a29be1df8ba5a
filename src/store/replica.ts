import { canonical } from '../core/canonical.ts'
import type { Cancel, Clock } from '../core/ports.ts'
import { type Entry, entryKey, ReplicatedState, type StateSeams } from '../core/state.ts'
import type { StoreError } from './errors.ts'
import type { StateStore } from './types.ts'

export type ChangeSource = 'local' | 'remote'
export type ChangeListener = (changed: readonly Entry[], source: ChangeSource) => void
/** The store went out of service for writes (with why) or came back (undefined). */
export type HealthListener = (failure: StoreError | undefined) => void

/** Options of the replica. */
export interface ReplicaInit {
  /** Timers of the recovery loop. */
  clock: Clock
  /** Test-only seams of the in-memory state (deliberate bugs for the simulator's checks). */
  seams?: StateSeams
  /** First wait before trying to bring a failed store back; doubles up to recoverMaxMs. */
  recoverMs?: number
  recoverMaxMs?: number
}

/** One group commit: what it writes beyond the dirty registers, and whether it syncs. */
interface Batch {
  /** Registers written ahead of their merge into memory (see applyDurably). */
  ahead: Entry[]
}

/**
 * The replicated state with its persistence: merges in memory, then writes every changed
 * register to the store. Writes are group-committed in order (one batch at a time, the newest
 * value of each key), so a slow disk never reorders two versions of a register.
 *
 * A write that fails is never dropped and never acknowledged. Its registers go back to the
 * dirty set (unless a newer version of them is already there), every caller waiting on that
 * batch gets the error, and the replica keeps trying to bring the store back into service
 * (LevelDB: a reopen, which starts a new log), with a growing wait. Meanwhile merges go on in
 * memory, so the daemon keeps serving reads; writes that asked for `sync` (the ones that back an
 * acknowledgement: a 202, a push ack) are refused at once; the others wait in memory. Once the
 * store is back, the whole state is written again in one synced batch, since a failed write
 * leaves it unknown which of the registers written just before it reached the disk.
 */
export class Replica {
  readonly state: ReplicatedState
  private readonly listeners = new Set<ChangeListener>()
  private readonly healthListeners = new Set<HealthListener>()
  /** key → the newest value to write, or null to delete it. */
  private readonly dirty = new Map<string, Entry | null>()
  private needSync = false
  private tail: Promise<void> = Promise.resolve()
  private pending: Promise<void> | null = null
  private pendingBatch: Batch | null = null
  private readonly store: StateStore
  private readonly recoverMs: number
  private readonly recoverMaxMs: number
  private recoverWait: number
  private recoverTimer: Cancel | undefined
  private readonly clock: Clock
  private closed = false

  constructor(store: StateStore, init: ReplicaInit) {
    this.store = store
    this.clock = init.clock
    this.state = new ReplicatedState(init.seams)
    this.recoverMs = init.recoverMs ?? 250
    this.recoverMaxMs = init.recoverMaxMs ?? 5000
    this.recoverWait = this.recoverMs
  }

  /** Merge everything persisted (at start). Emits nothing. */
  async load(): Promise<number> {
    const entries = await this.store.loadAll()
    for (const e of entries) this.state.merge(e)
    // Fragments a compacted job absorbed while this daemon was down: delete them now.
    const removed = this.state.takeRemoved()
    if (removed.length > 0) {
      for (const key of removed) this.dirty.set(key, null)
      await this.enqueue(false)
    }
    return entries.length
  }

  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Hear when the store goes out of service for writes, and when it is back. */
  onHealth(listener: HealthListener): () => void {
    this.healthListeners.add(listener)
    return () => this.healthListeners.delete(listener)
  }

  /** False while the store refuses writes (a full disk, a failed write not yet recovered). */
  get writable(): boolean {
    return this.store.failure === undefined
  }

  /** Why the store refuses writes, if it does. */
  get failure(): StoreError | undefined {
    return this.store.failure
  }

  /**
   * Merge entries; persist those that changed the state. Resolves with the changed entries
   * (merged values) once they are written (`sync`: on disk). Listeners hear of the change
   * synchronously, before the write.
   */
  async apply(
    entries: readonly Entry[],
    source: ChangeSource,
    options: { sync?: boolean } = {}
  ): Promise<Entry[]> {
    const changed = this.mergeAll(entries)
    for (const key of this.state.takeRemoved()) this.dirty.set(key, null)
    for (const e of changed) this.dirty.set(entryKey(e), e)
    if (changed.length > 0) for (const l of this.listeners) l(changed, source)
    if (changed.length > 0 || options.sync === true) await this.enqueue(options.sync ?? false)
    return changed
  }

  /**
   * Write entries to disk (synced) before merging them into memory, for writes that back an
   * acknowledgement and must leave no trace when they fail: a job refused with 507 must not run
   * anyway. Rejects with the store's failure, leaving the state untouched.
   */
  async applyDurably(entries: readonly Entry[]): Promise<Entry[]> {
    const failure = this.store.failure
    if (failure !== undefined) throw failure
    const ahead = entries.map((e) => this.state.preview(e)).filter((e): e is Entry => e !== null)
    await this.enqueue(true, ahead)
    // Durable from here: the call succeeds whatever happens to later writes. Merge it in memory;
    // only what differs from what was written (something newer arrived meanwhile) is dirty, and
    // its write is the dirty set's business, not this caller's.
    const written = new Map(ahead.map((e) => [entryKey(e), canonical(e.value)]))
    const changed = this.mergeAll(entries)
    for (const key of this.state.takeRemoved()) this.dirty.set(key, null)
    let more = false
    for (const e of changed) {
      if (written.get(entryKey(e)) === canonical(e.value)) continue
      this.dirty.set(entryKey(e), e)
      more = true
    }
    if (changed.length > 0) for (const l of this.listeners) l(changed, 'local')
    if (more || this.dirty.size > 0) this.enqueue(false).catch(() => undefined)
    return changed
  }

  /** Forget a job whose tombstone expired (persisted like any change). */
  async dropJob(jobId: string): Promise<void> {
    this.state.dropJob(jobId)
    for (const key of this.state.takeRemoved()) this.dirty.set(key, null)
    await this.enqueue(false)
  }

  /**
   * Wait until everything merged so far is synced to disk. A store out of service gets one more
   * chance to recover first; rejects if it cannot.
   */
  async flush(): Promise<void> {
    if (this.store.failure !== undefined) await this.recover()
    await this.enqueue(true)
  }

  /** Stop trying to recover the store (the daemon is stopping). */
  close(): void {
    this.closed = true
    this.recoverTimer?.()
  }

  private mergeAll(entries: readonly Entry[]): Entry[] {
    const changed: Entry[] = []
    for (const e of entries) {
      const m = this.state.merge(e)
      if (m !== null) changed.push(m)
    }
    return changed
  }

  /**
   * Join the next group commit (starting one if none is waiting). While the store is out of
   * service, writes that need no sync stay in the dirty set and resolve at once: they will be
   * written when it is back.
   */
  private enqueue(sync: boolean, ahead: readonly Entry[] = []): Promise<void> {
    if (this.store.failure !== undefined && !sync && ahead.length === 0) return Promise.resolve()
    if (sync) this.needSync = true
    if (this.pending === null || this.pendingBatch === null) {
      const batch: Batch = { ahead: [] }
      this.pendingBatch = batch
      this.pending = this.tail.then(() => this.commit(batch))
      this.tail = this.pending.catch(() => undefined)
    }
    this.pendingBatch.ahead.push(...ahead)
    return this.pending
  }

  private async commit(batch: Batch): Promise<void> {
    this.pending = null
    this.pendingBatch = null
    const taken = new Map(this.dirty)
    const sync = this.needSync
    this.dirty.clear()
    this.needSync = false
    const puts: Entry[] = []
    const dels: string[] = []
    for (const [key, e] of taken) {
      if (e === null) dels.push(key)
      else puts.push(e)
    }
    // Ahead entries were merged from memory, which holds at least the dirty values: they go last.
    puts.push(...batch.ahead)
    try {
      await this.store.write(puts, { sync }, dels)
    } catch (err) {
      // Never drop a write: what failed is dirty again, unless a newer version is already there.
      // Ahead entries are not: their callers hear of the failure and nothing merged them.
      for (const [key, e] of taken) if (!this.dirty.has(key)) this.dirty.set(key, e)
      if (sync) this.needSync = true
      this.outOfService()
      throw err
    }
  }

  /** The store just failed a write: tell listeners once and start trying to bring it back. */
  private outOfService(): void {
    if (this.recoverTimer !== undefined || this.closed) return
    const failure = this.store.failure
    for (const l of this.healthListeners) l(failure)
    this.scheduleRecovery()
  }

  private scheduleRecovery(): void {
    if (this.closed) return
    this.recoverTimer = this.clock.after(this.recoverWait, () => {
      this.recover().then(
        () => {
          this.recoverTimer = undefined
          this.recoverWait = this.recoverMs
          for (const l of this.healthListeners) l(undefined)
        },
        () => {
          this.recoverWait = Math.min(this.recoverMaxMs, this.recoverWait * 2)
          this.scheduleRecovery()
        }
      )
    })
  }

  /**
   * Bring the store back and write the whole state again, synced: after a failed write nobody
   * knows which registers written just before it reached the disk.
   */
  private async recover(): Promise<void> {
    await this.store.recover()
    const all: Entry[] = []
    for (const id of this.state.jobIds()) all.push(...this.state.entriesOf(id))
    await this.enqueue(true, all)
  }
}
