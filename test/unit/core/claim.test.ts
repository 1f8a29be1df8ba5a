import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { claimability, newClaim, pickClaims } from '../../../src/core/claim.ts'
import { peersSignature, rankPeers, slotOwners } from '../../../src/core/hrw.ts'
import type { FragmentRegister, JobRegister } from '../../../src/core/register.ts'
import { resolveSpec, specHashOf } from '../../../src/core/spec.ts'

function job(id: string, n: number, priority = 0, createdAt = 0): JobRegister {
  const spec = resolveSpec({ task: 'echo', range: { start: 0, end: n }, fragmentSize: 1, priority }, {})
  return {
    id,
    tenant: 'default',
    spec,
    specHash: specHashOf(spec),
    createdAt,
    cancelled: false,
    acceptedBy: 'p0'
  }
}

const peersArb = fc.uniqueArray(fc.stringMatching(/^p[a-z0-9]{1,6}$/), { minLength: 1, maxLength: 6 })

describe('claim decisions', () => {
  it('with one membership view, every fragment is claimed by exactly one peer (no steals yet)', () => {
    fc.assert(
      fc.property(peersArb, fc.integer({ min: 1, max: 120 }), (ids, n) => {
        const peers = ids.map((id) => ({ id, capacity: 2 }))
        const j = job('j1', n)
        const seen = new Map<string, string>()
        for (const self of ids) {
          const picked = pickClaims(
            {
              self,
              peers,
              leaseLive: () => true,
              claimableSince: () => 0,
              now: 0,
              stealDelayMs: 1000
            },
            [{ job: j, frags: new Map() }],
            n
          )
          for (const t of picked) {
            expect(seen.has(t.path)).toBe(false)
            seen.set(t.path, self)
            expect(rankPeers(t.key, peers)[0]?.id).toBe(self)
          }
        }
        expect(seen.size).toBe(n)
      })
    )
  })

  it('steals after rank × stealDelay, from the far end', () => {
    const peers = [
      { id: 'pa', capacity: 1 },
      { id: 'pb', capacity: 1 }
    ]
    const j = job('j1', 40)
    const ctx = (now: number) => ({
      self: 'pa',
      peers,
      leaseLive: () => true,
      claimableSince: () => 0,
      now,
      stealDelayMs: 1000
    })
    const early = pickClaims(ctx(999), [{ job: j, frags: new Map() }], 100)
    const late = pickClaims(ctx(1000), [{ job: j, frags: new Map() }], 100)
    expect(early.length).toBeLessThan(40)
    expect(late.length).toBe(40)
    const steals = late.slice(early.length).map((t) => Number(t.path))
    expect(steals).toEqual([...steals].sort((a, b) => b - a))
  })

  it('claims higher priority first, and never more than the free slots', () => {
    const peers = [{ id: 'pa', capacity: 1 }]
    const low = job('low', 10, 0, 1)
    const high = job('high', 10, 5, 2)
    const picked = pickClaims(
      { self: 'pa', peers, leaseLive: () => true, claimableSince: () => 0, now: 0, stealDelayMs: 0 },
      [
        { job: low, frags: new Map() },
        { job: high, frags: new Map() }
      ],
      3
    )
    expect(picked.map((t) => t.job.id)).toEqual(['high', 'high', 'high'])
    expect(picked.map((t) => t.path)).toEqual(['0', '1', '2'])
  })

  it('skips running fragments with live leases and re-claims lapsed ones as host-lost', () => {
    const running: FragmentRegister = newClaim(undefined, 'pb', 1, 1, 0, 0)
    expect(claimability(running, () => true, 'k')).toBeNull()
    expect(claimability(running, () => false, 'k')).toEqual({ attempt: 1, hostLost: 1 })
    expect(claimability(undefined, () => true, 'k')).toEqual({ attempt: 1, hostLost: 0 })
    const done: FragmentRegister = {
      top: 1,
      claim: { ...(running.claim as NonNullable<FragmentRegister['claim']>), phase: 'SUCCEEDED' }
    }
    expect(claimability(done, () => false, 'k')).toBeNull()
  })

  it('every new claim takes epoch top + 1', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1000 }), (top) => {
        const r = newClaim({ top, claim: null }, 'pa', 3, 1, 0, 0)
        expect(r.top).toBe(top + 1)
        expect(r.claim?.epoch).toBe(top + 1)
      })
    )
  })
})

describe('maxConcurrency slot owners', () => {
  it('hand out exactly the cap among the peers, whatever their order', () => {
    fc.assert(
      fc.property(peersArb, fc.integer({ min: 1, max: 200 }), (ids, cap) => {
        const peers = ids.map((id) => ({ id, capacity: 1 }))
        const owners = slotOwners('job', cap, peers)
        expect(owners.reduce((n, o) => n + o.capacity, 0)).toBe(cap)
        for (const o of owners) expect(ids).toContain(o.id)
        expect(peersSignature(peers)).toBe(peersSignature([...peers].reverse()))
      })
    )
  })
})
