import { type Entry, entryKey, ReplicatedState } from '../core/state.ts'
import type { StateStore } from './types.ts'

export type ChangeSource = 'local' | 'remote'
export type ChangeListener = (changed: readonly Entry[], source: ChangeSource) => void

/**
 * The replicated state with its persistence: merges in memory, then writes every changed
 * register to the store. Writes are group-committed in order (one batch at a time, the newest
 * value of each key), so a slow disk never reorders two versions of a register.
 */
export class Replica {
  readonly state = new ReplicatedState()
  private readonly listeners = new Set<ChangeListener>()
  /** key → the newest value to write, or null to delete it. */
  private readonly dirty = new Map<string, Entry | null>()
  private needSync = false
  private tail: Promise<void> = Promise.resolve()
  private pending: Promise<void> | null = null

  private readonly store: StateStore

  constructor(store: StateStore) {
    this.store = store
  }

  /** Merge everything persisted (at start). Emits nothing. */
  async load(): Promise<number> {
    const entries = await this.store.loadAll()
    for (const e of entries) this.state.merge(e)
    // Fragments a compacted job absorbed while this daemon was down: delete them now.
    const removed = this.state.takeRemoved()
    if (removed.length > 0) {
      for (const key of removed) this.dirty.set(key, null)
      await this.persist([], false)
    }
    return entries.length
  }

  onChange(listener: ChangeListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
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
    if (changed.length > 0) {
      for (const l of this.listeners) l(changed, source)
      await this.persist(changed, options.sync ?? false)
    } else if (options.sync === true) {
      // Nothing new, but the caller needs what it holds to be on disk.
      await this.persist([], true)
    }
    return changed
  }

  /** Forget a job whose tombstone expired (persisted like any change). */
  async dropJob(jobId: string): Promise<void> {
    this.state.dropJob(jobId)
    for (const key of this.state.takeRemoved()) this.dirty.set(key, null)
    await this.persist([], false)
  }

  /** Wait until everything merged so far is written. */
  async flush(): Promise<void> {
    await this.persist([], false)
  }

  private mergeAll(entries: readonly Entry[]): Entry[] {
    const changed: Entry[] = []
    for (const e of entries) {
      const m = this.state.merge(e)
      if (m !== null) changed.push(m)
    }
    return changed
  }

  private persist(entries: readonly Entry[], sync: boolean): Promise<void> {
    for (const e of entries) this.dirty.set(entryKey(e), e)
    if (sync) this.needSync = true
    if (this.pending === null) {
      this.pending = this.tail.then(async () => {
        this.pending = null
        const puts: Entry[] = []
        const dels: string[] = []
        for (const [key, e] of this.dirty) {
          if (e === null) dels.push(key)
          else puts.push(e)
        }
        const s = this.needSync
        this.dirty.clear()
        this.needSync = false
        await this.store.write(puts, { sync: s }, dels)
      })
      this.tail = this.pending.catch(() => undefined)
    }
    return this.pending
  }
}
