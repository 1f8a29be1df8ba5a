import { type Entry, entryKey } from '../core/state.ts'
import type { StateStore } from './types.ts'

/** In-memory store for tests and the simulator. Values are deep-copied like a real store. */
export class MemoryStore implements StateStore {
  private readonly state = new Map<string, string>()
  private readonly meta = new Map<string, string>()
  private isOpen = false

  async open(): Promise<void> {
    this.isOpen = true
  }

  async close(): Promise<void> {
    this.isOpen = false
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
    this.check()
    for (const e of entries) this.state.set(entryKey(e), JSON.stringify(e))
    for (const k of removals) this.state.delete(k)
  }

  async clearState(): Promise<void> {
    this.check()
    this.state.clear()
  }

  async getMeta<T>(key: string): Promise<T | undefined> {
    this.check()
    const v = this.meta.get(key)
    return v === undefined ? undefined : (JSON.parse(v) as T)
  }

  async putMeta(key: string, value: unknown): Promise<void> {
    this.check()
    this.meta.set(key, JSON.stringify(value))
  }

  private check(): void {
    if (!this.isOpen) throw Object.assign(new Error('store is not open'), { code: 'STORE_NOT_OPEN' })
  }
}
