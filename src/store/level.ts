import type { AbstractSublevel } from 'abstract-level'
import { Level } from 'level'
import { type Entry, entryKey } from '../core/state.ts'
import type { StateStore, WriteOptions } from './types.ts'

type Sub = AbstractSublevel<Level<string, unknown>, string | Buffer | Uint8Array, string, unknown>

/**
 * LevelDB store: one sublevel per concern — `state` holds the registers under their entry keys,
 * `meta` holds the daemon's own records (incarnation and such).
 */
export class LevelStore implements StateStore {
  private readonly db: Level<string, unknown>
  private readonly state: Sub
  private readonly meta: Sub
  private closing: Promise<void> | undefined

  constructor(location: string) {
    this.db = new Level<string, unknown>(location, { valueEncoding: 'json' })
    this.state = this.db.sublevel<string, unknown>('state', { valueEncoding: 'json' })
    this.meta = this.db.sublevel<string, unknown>('meta', { valueEncoding: 'json' })
  }

  async open(): Promise<void> {
    await this.db.open()
  }

  close(): Promise<void> {
    this.closing ??= this.db.close()
    return this.closing
  }

  async loadAll(): Promise<Entry[]> {
    const out: Entry[] = []
    for await (const value of this.state.values()) out.push(value as Entry)
    return out
  }

  async write(
    entries: readonly Entry[],
    options: WriteOptions = {},
    removals: readonly string[] = []
  ): Promise<void> {
    if (entries.length === 0 && removals.length === 0 && options.sync !== true) return
    const batch = this.db.batch()
    for (const e of entries) batch.put(entryKey(e), e, { sublevel: this.state })
    for (const k of removals) batch.del(k, { sublevel: this.state })
    await batch.write({ sync: options.sync ?? false })
  }

  async clearState(): Promise<void> {
    await this.state.clear()
  }

  async getMeta<T>(key: string): Promise<T | undefined> {
    return (await this.meta.get(key)) as T | undefined
  }

  async putMeta(key: string, value: unknown, options: WriteOptions = {}): Promise<void> {
    await this.db.batch([{ type: 'put', sublevel: this.meta, key, value }], { sync: options.sync ?? false })
  }
}
