import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AbstractSublevel } from 'abstract-level'
import { Level } from 'level'
import { type Entry, entryKey } from '../core/state.ts'
import { type StoreError, storeErrorOf } from './errors.ts'
import type { StateStore, WriteOptions } from './types.ts'

type Sub = AbstractSublevel<Level<string, unknown>, string | Buffer | Uint8Array, string, unknown>

/** Options of the LevelDB store. */
export interface LevelStoreInit {
  /**
   * Create the database when it is missing. The daemon passes false once the store was ever
   * created, so a store whose files vanished (a deleted CURRENT, say) is reported, not
   * silently replaced by an empty one.
   */
  createIfMissing?: boolean
}

/**
 * LevelDB store: one sublevel per concern — `state` holds the registers under their entry keys,
 * `meta` holds the daemon's own records (incarnation and such).
 *
 * A failed write leaves LevelDB's log in a state nobody can trust: the record may be torn, and
 * the log writer's idea of its block offset no longer matches the file, so records appended
 * after it may be dropped on the next open (LevelDB's reader skips to the next 32 KiB block).
 * So after any failed write this store refuses every further write until `recover()` has closed
 * and reopened the database, which replays the log up to the damage and starts a new one.
 */
export class LevelStore implements StateStore {
  readonly location: string
  private readonly db: Level<string, unknown>
  private readonly state: Sub
  private readonly meta: Sub
  private readonly createIfMissing: boolean
  private closing: Promise<void> | undefined
  /** The failure that put this store out of service for writes, until recover(). */
  private broken: StoreError | undefined

  constructor(location: string, init: LevelStoreInit = {}) {
    this.location = location
    this.createIfMissing = init.createIfMissing ?? true
    this.db = new Level<string, unknown>(location, { valueEncoding: 'json' })
    this.state = this.db.sublevel<string, unknown>('state', { valueEncoding: 'json' })
    this.meta = this.db.sublevel<string, unknown>('meta', { valueEncoding: 'json' })
  }

  async open(): Promise<void> {
    try {
      await this.db.open({ createIfMissing: this.createIfMissing })
    } catch (err) {
      throw storeErrorOf(err, this.location, 'open')
    }
  }

  close(): Promise<void> {
    this.closing ??= this.db.close()
    return this.closing
  }

  get failure(): StoreError | undefined {
    return this.broken
  }

  async recover(): Promise<void> {
    if (this.broken === undefined) return
    await this.db.close().catch(() => undefined)
    try {
      await this.db.open({ createIfMissing: false })
    } catch (err) {
      throw storeErrorOf(err, this.location, 'reopen')
    }
    this.broken = undefined
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
    this.checkWritable()
    const batch = this.db.batch()
    for (const e of entries) batch.put(entryKey(e), e, { sublevel: this.state })
    for (const k of removals) batch.del(k, { sublevel: this.state })
    await this.guard(batch.write({ sync: options.sync ?? false }))
  }

  async clearState(): Promise<void> {
    this.checkWritable()
    await this.guard(this.state.clear())
  }

  async getMeta<T>(key: string): Promise<T | undefined> {
    return (await this.meta.get(key)) as T | undefined
  }

  async putMeta(key: string, value: unknown, options: WriteOptions = {}): Promise<void> {
    this.checkWritable()
    await this.guard(
      this.db.batch([{ type: 'put', sublevel: this.meta, key, value }], { sync: options.sync ?? false })
    )
  }

  /**
   * What LevelDB reported about the last open in its own LOG file: lines saying it dropped or
   * found damaged records while replaying the log (a torn write before a crash, say). Empty when
   * it found nothing worth telling.
   */
  async recoveryNotes(): Promise<string[]> {
    const text = await readFile(join(this.location, 'LOG'), 'utf8').catch(() => '')
    return text
      .split('\n')
      .filter((l) => /dropping|corrupt|ignoring/i.test(l))
      .map((l) => l.trim())
      .slice(-20)
  }

  private checkWritable(): void {
    if (this.broken !== undefined) throw this.broken
  }

  private async guard(write: Promise<void>): Promise<void> {
    try {
      await write
    } catch (err) {
      this.broken = storeErrorOf(err, this.location, 'write')
      throw this.broken
    }
  }
}
