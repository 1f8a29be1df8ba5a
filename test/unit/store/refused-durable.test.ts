/**
 * A durable write is all or nothing. `applyDurably` once awaited a second, unsynced write of the
 * same register after its synced one: when the disk filled between the two, the caller heard a
 * failure (the API answered 507 "the job was not accepted") although the job was on disk and in
 * memory, so it spread and ran (seen on two daemons whose disks flapped full and free). Here the
 * disk fills right after the first write, which pins the case without a real disk.
 */
import { describe, expect, it } from 'vitest'
import type { Entry } from '../../../src/core/state.ts'
import { MemoryStore, Replica } from '../../../src/store/index.ts'

const job = (id: string): Entry => ({
  kind: 'job',
  id,
  value: {
    id,
    tenant: 'default',
    spec: {} as never,
    specHash: 'f'.repeat(32),
    createdAt: 1,
    cancelled: false,
    acceptedBy: 'pa'
  }
})

/** A disk that fills right after the first write that gets through. */
class FillsAfterOneWrite extends MemoryStore {
  writes = 0
  override async write(...args: Parameters<MemoryStore['write']>): Promise<void> {
    await super.write(...args)
    if (++this.writes === 1) this.failWrites(true)
  }
}

describe('a durable submit refused by the disk', () => {
  it('either is accepted, or leaves no trace (in memory, for listeners, on disk)', async () => {
    const store = new FillsAfterOneWrite()
    await store.open()
    const replica = new Replica(store, { recoverMs: 1000, recoverMaxMs: 1000 })
    const heard: string[] = []
    replica.onChange((changed) => heard.push(...changed.map((e) => (e.kind === 'job' ? e.id : e.path))))

    let refused = false
    await replica.applyDurably([job('j1')]).catch(() => {
      refused = true
    })
    replica.close()
    if (refused) {
      // The API answered 507: the job must not exist anywhere.
      expect(replica.state.jobs.has('j1')).toBe(false)
      expect(heard).toEqual([])
      store.failWrites(false)
      expect((await store.loadAll()).map((e) => (e.kind === 'job' ? e.id : e.path))).toEqual([])
    } else {
      expect(replica.state.jobs.has('j1')).toBe(true)
    }
  })
})
