import type { Entry } from '../core/state.ts'
import type { StoreError } from './errors.ts'

/** Options for writes: `sync` waits for the OS to put the write on disk (fsync). */
export interface WriteOptions {
  sync?: boolean
}

/**
 * Persistence of the replicated state and of the daemon's own metadata. One implementation
 * over LevelDB, one in memory for tests; both pass test/unit/store/contract.ts.
 */
export interface StateStore {
  open(): Promise<void>
  close(): Promise<void>
  /** Every persisted register. */
  loadAll(): Promise<Entry[]>
  /** Write registers (already merged) and delete absorbed ones (by key), in one atomic batch. */
  write(entries: readonly Entry[], options?: WriteOptions, removals?: readonly string[]): Promise<void>
  /** Delete every register (a wipe before a full resync); metadata stays. */
  clearState(): Promise<void>
  getMeta<T>(key: string): Promise<T | undefined>
  putMeta(key: string, value: unknown, options?: WriteOptions): Promise<void>
  /**
   * The failure that put the store out of service for writes, if any. After a failed write a
   * store refuses every write (rejecting with this error) until `recover()` succeeds.
   */
  readonly failure: StoreError | undefined
  /** Bring a failed store back into service (LevelDB: reopen, which starts a new log). */
  recover(): Promise<void>
}
