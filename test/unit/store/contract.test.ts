import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { newClaim } from '../../../src/core/claim.ts'
import type { Entry } from '../../../src/core/state.ts'
import { systemClock } from '../../../src/daemon/clock.ts'
import { LevelStore, MemoryStore, Replica, type StateStore } from '../../../src/store/index.ts'

const entry = (path: string, holder = 'pa'): Extract<Entry, { kind: 'frag' }> => ({
  kind: 'frag',
  job: 'j1',
  specHash: 'f'.repeat(32),
  path,
  value: newClaim(undefined, holder, 1, 1, 0, 0)
})

/** One contract, every store (abstract-level's suite idea). */
function contract(
  name: string,
  make: () => { store: StateStore; reopen: () => StateStore; cleanup: () => void }
) {
  describe(`${name} store contract`, () => {
    let cleanup = () => {}
    afterEach(() => cleanup())

    it('writes, reloads and overwrites registers by key', async () => {
      const s = make()
      cleanup = s.cleanup
      await s.store.open()
      await s.store.write([entry('0'), entry('1')], { sync: true })
      await s.store.write([entry('0', 'pb')])
      const all = await s.store.loadAll()
      expect(all).toHaveLength(2)
      expect(all.find((e) => e.kind === 'frag' && e.path === '0')?.value).toEqual(entry('0', 'pb').value)
    })

    it('keeps metadata', async () => {
      const s = make()
      cleanup = s.cleanup
      await s.store.open()
      expect(await s.store.getMeta('incarnation')).toBeUndefined()
      await s.store.putMeta('incarnation', 7, { sync: true })
      expect(await s.store.getMeta('incarnation')).toBe(7)
    })

    it('survives close and reopen', async () => {
      const s = make()
      cleanup = s.cleanup
      await s.store.open()
      await s.store.write([entry('3')], { sync: true })
      await s.store.putMeta('m', { a: 1 })
      await s.store.close()
      const again = s.reopen()
      await again.open()
      expect(await again.loadAll()).toEqual([entry('3')])
      expect(await again.getMeta('m')).toEqual({ a: 1 })
      await again.close()
    })

    it('a replica persists what it merged, in order, and reloads it', async () => {
      const s = make()
      cleanup = s.cleanup
      await s.store.open()
      const r = new Replica(s.store, { clock: systemClock })
      const first = entry('0')
      const later: Entry = { ...first, value: { ...first.value, top: 9 } }
      const p1 = r.apply([first], 'local')
      const p2 = r.apply([later], 'remote', { sync: true })
      await Promise.all([p1, p2])
      await s.store.close()
      const again = s.reopen()
      await again.open()
      const r2 = new Replica(again, { clock: systemClock })
      expect(await r2.load()).toBe(1)
      expect(r2.state.stateDigest()).toBe(r.state.stateDigest())
      await again.close()
    })
  })
}

contract('level', () => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-store-'))
  return {
    store: new LevelStore(dir),
    reopen: () => new LevelStore(dir),
    cleanup: () => rmSync(dir, { recursive: true, force: true })
  }
})

contract('memory', () => {
  // The memory store "survives" a reopen by being the same object, like a disk would.
  const store = new MemoryStore()
  return { store, reopen: () => store, cleanup: () => {} }
})
