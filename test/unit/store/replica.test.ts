import { describe, expect, it } from 'vitest'
import { newClaim } from '../../../src/core/claim.ts'
import type { Entry } from '../../../src/core/state.ts'
import { systemClock } from '../../../src/daemon/clock.ts'
import { MemoryStore, Replica, type StoreError } from '../../../src/store/index.ts'

const frag = (path: string, top = 1): Extract<Entry, { kind: 'frag' }> => {
  const reg = newClaim(undefined, 'pa', 1, 1, 0, 0)
  return { kind: 'frag', job: 'j1', specHash: 'f'.repeat(32), path, value: { ...reg, top } }
}

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

async function setup() {
  const store = new MemoryStore()
  await store.open()
  const replica = new Replica(store, { clock: systemClock, recoverMs: 5, recoverMaxMs: 20 })
  const health: Array<string | undefined> = []
  replica.onHealth((f) => health.push(f?.failure))
  return { store, replica, health }
}

const stored = async (store: MemoryStore) =>
  new Map(
    (await store.loadAll()).map((e) => [e.kind === 'frag' ? e.path : e.kind === 'metric' ? e.peer : e.id, e])
  )

const until = async (what: string, cond: () => boolean | Promise<boolean>) => {
  for (let i = 0; i < 400; i++) {
    if (await cond()) return
    await new Promise((r) => setTimeout(r, 5))
  }
  throw new Error(`timed out waiting for ${what}`)
}

describe('replica on a failing disk', () => {
  it('a write that fails is not dropped: it is written once the store recovers by itself', async () => {
    const { store, replica, health } = await setup()
    store.failWrites(true)
    await expect(replica.apply([frag('0')], 'local')).rejects.toMatchObject({ code: 'STORAGE_FULL' })
    expect(replica.writable).toBe(false)
    // Merged in memory all the same: reads go on.
    expect(replica.state.fragmentsOf('j1').size).toBe(0) // no job register yet: fragments hide
    expect(replica.state.entriesOf('j1')).toHaveLength(1)
    // More changes while the disk is full wait in memory (no sync asked: they resolve).
    await replica.apply([frag('1')], 'remote')
    store.failWrites(false)
    await until('recovery', () => replica.writable)
    const on = await stored(store)
    expect([...on.keys()].sort()).toEqual(['0', '1'])
    expect(health).toEqual(['full', undefined])
  })

  it('a synced write is refused while the disk is full, and succeeds after', async () => {
    const { store, replica } = await setup()
    store.failWrites(true)
    await expect(replica.apply([frag('0')], 'remote', { sync: true })).rejects.toMatchObject({
      code: 'STORAGE_FULL'
    })
    await expect(replica.apply([frag('1')], 'remote', { sync: true })).rejects.toMatchObject({
      code: 'STORAGE_FULL'
    })
    store.failWrites(false)
    await until('recovery', () => replica.writable)
    await replica.apply([frag('2')], 'remote', { sync: true })
    expect([...(await stored(store)).keys()].sort()).toEqual(['0', '1', '2'])
  })

  it('applyDurably leaves no trace when its write fails, and is visible only once written', async () => {
    const { store, replica } = await setup()
    const seen: string[] = []
    replica.onChange((changed) =>
      seen.push(...changed.map((e) => (e.kind === 'frag' ? e.path : e.kind === 'metric' ? e.peer : e.id)))
    )
    store.failWrites(true)
    // The store has not failed yet: the failure is found by this very write.
    await expect(replica.applyDurably([job('j-full')])).rejects.toMatchObject({ code: 'STORAGE_FULL' })
    // Refused at once while the store is out of service.
    await expect(replica.applyDurably([job('j-again')])).rejects.toMatchObject({ code: 'STORAGE_FULL' })
    expect(replica.state.jobs.size).toBe(0)
    expect(seen).toEqual([])
    store.failWrites(false)
    await until('recovery', () => replica.writable)
    // Nothing of the refused jobs reached the disk either, even after the recovery's rewrite.
    expect((await stored(store)).size).toBe(0)
    const changed = await replica.applyDurably([job('j-ok')])
    expect(changed).toHaveLength(1)
    expect(replica.state.jobs.has('j-ok')).toBe(true)
    expect((await stored(store)).has('j-ok')).toBe(true)
  })

  it('after a recovery the newest version of a register is on disk', async () => {
    const { store, replica } = await setup()
    await replica.apply([frag('0', 1)], 'local', { sync: true })
    store.failWrites(true)
    await replica.apply([frag('0', 5)], 'local').catch((e: StoreError) => expect(e.code).toBe('STORAGE_FULL'))
    await replica.apply([frag('0', 9)], 'remote')
    store.failWrites(false)
    await until('recovery', () => replica.writable)
    const e = (await stored(store)).get('0') as Extract<Entry, { kind: 'frag' }>
    expect(e.value.top).toBe(9)
  })

  it('flush on a store out of service gives it one more chance, and rejects if it cannot', async () => {
    const { store, replica } = await setup()
    store.failWrites(true)
    await replica.apply([frag('0')], 'local').catch(() => undefined)
    await expect(replica.flush()).rejects.toMatchObject({ code: 'STORAGE_FULL' })
    store.failWrites(false)
    await replica.flush()
    expect((await stored(store)).has('0')).toBe(true)
    replica.close()
  })
})

/**
 * A durable write is all or nothing. `applyDurably` once awaited a second, unsynced write of the
 * same register after its synced one: when the disk filled between the two, the caller heard a
 * failure (the API answered 507 "the job was not accepted") although the job was on disk and in
 * memory, so it spread and ran (seen on two daemons whose disks flapped full and free). Here the
 * disk fills right after the first write, which pins the case without a real disk.
 *
 * A disk that fills right after the first write that gets through.
 */
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
    const replica = new Replica(store, { clock: systemClock, recoverMs: 1000, recoverMaxMs: 1000 })
    const heard: string[] = []
    replica.onChange((changed) =>
      heard.push(...changed.map((e) => (e.kind === 'frag' ? e.path : e.kind === 'metric' ? e.peer : e.id)))
    )

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
      expect(
        (await store.loadAll()).map((e) => (e.kind === 'frag' ? e.path : e.kind === 'metric' ? e.peer : e.id))
      ).toEqual([])
    } else {
      expect(replica.state.jobs.has('j1')).toBe(true)
    }
  })
})
