import { type Entry, entryKey } from '../core/state.ts'
import { StoreError } from './errors.ts'
import type { StateStore } from './types.ts'

/**
 * In-memory store for tests. Values are deep-copied like a real store.
 * `failWrites()` makes it behave like a full disk: writes fail until space returns and the
 * store is recovered.
 */
export class MemoryStore implements StateStore {
  private readonly state = new Map<string, string>()
  private readonly meta = new Map<string, string>()
  private isOpen = false
  private broken: StoreError | undefined
  /** While true, every write fails (the disk is full); recover() fails too. */
  private full = false

  async open(): Promise<void> {
    this.isOpen = true
  }

  async close(): Promise<void> {
    this.isOpen = false
  }

  get failure(): StoreError | undefined {
    return this.broken
  }

  /** Simulate a full disk (`true`) or space freed again (`false`). */
  failWrites(full: boolean): void {
    this.full = full
  }

  async recover(): Promise<void> {
    if (this.broken === undefined) return
    if (this.full) throw this.noSpace()
    this.broken = undefined
  }

  async loadAll(): Promise<Entry[]> {
    this.check()
    return [...this.state.values()].map((v) => JSON.parse(v) as Entry)
  }

  async write(
    entries: readonly Entry[],
    _options?: unknown,
    removals: readonly string[] = []
  ): Promise<void> {
    this.checkWrite()
    for (const e of entries) this.state.set(entryKey(e), JSON.stringify(e))
    for (const k of removals) this.state.delete(k)
  }

  async clearState(): Promise<void> {
    this.checkWrite()
    this.state.clear()
  }

  async getMeta<T>(key: string): Promise<T | undefined> {
    this.check()
    const v = this.meta.get(key)
    return v === undefined ? undefined : (JSON.parse(v) as T)
  }

  async putMeta(key: string, value: unknown): Promise<void> {
    this.checkWrite()
    this.meta.set(key, JSON.stringify(value))
  }

  private noSpace(): StoreError {
    return new StoreError('full', 'memory', 'no space left on the device of the state store memory')
  }

  private checkWrite(): void {
    this.check()
    if (this.broken !== undefined) throw this.broken
    if (this.full) {
      this.broken = this.noSpace()
      throw this.broken
    }
  }

  private check(): void {
    if (!this.isOpen) throw Object.assign(new Error('store is not open'), { code: 'STORE_NOT_OPEN' })
  }
}
