import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { type ClaimContext, capShare, claimability, newClaim, pickClaims } from '../../../src/core/claim.ts'
import { peersSignature, rankOf, rankPeers, slotOwners } from '../../../src/core/hrw.ts'
import type { FragmentRegister, JobRegister } from '../../../src/core/register.ts'
import { resolveSpec, specHashOf } from '../../../src/core/spec.ts'
import { leafFragments } from '../../../src/core/status.ts'

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

describe('the claim walk, resumed and bounded', () => {
  const phases = ['SUCCEEDED', 'RUNNABLE', 'RUNNING', 'FAILED', 'SPLIT', 'none'] as const
  /** Registers for n top-level fragments with random phases; a SPLIT one gets two children. */
  const fragsArb = (n: number) =>
    fc.array(fc.tuple(fc.constantFrom(...phases), fc.constantFrom(...phases), fc.constantFrom(...phases)), {
      minLength: n,
      maxLength: n
    })
  const reg = (phase: (typeof phases)[number], holder: string): FragmentRegister | undefined =>
    phase === 'none'
      ? undefined
      : {
          top: 1,
          claim: { epoch: 1, holder, incarnation: 1, seq: 2, attempt: 1, phase, hostLost: 0 }
        }

  it('gives the same claims as a walk of every leaf, tick after tick, whatever the fragments', () => {
    fc.assert(
      fc.property(
        peersArb,
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 1, max: 8 }),
        (ids, n, slots) =>
          fc.assert(
            fc.property(fragsArb(n), fc.boolean(), fc.constantFrom(500, 10_000), (states, live, now) => {
              const frags = new Map<string, FragmentRegister>()
              states.forEach(([p, c0, c1], i) => {
                const r = reg(p, ids[i % ids.length] as string)
                if (r !== undefined) frags.set(String(i), r)
                if (p === 'SPLIT') {
                  for (const [k, c] of [
                    ['0', c0],
                    ['1', c1]
                  ] as const) {
                    const child = reg(c === 'SPLIT' ? 'SUCCEEDED' : c, ids[0] as string)
                    if (child !== undefined) frags.set(`${i}.${k}`, child)
                  }
                }
              })
              const j = job('j1', n)
              const self = ids[0] as string
              const scans = new Map<string, number>()
              const ctx: ClaimContext = {
                self,
                peers: ids.map((id) => ({ id, capacity: 1 })),
                leaseLive: () => live,
                claimableSince: () => 0,
                ownScan: {
                  from: (job) => scans.get(job.id) ?? 0,
                  reached: (job, _p, i) => scans.set(job.id, i)
                },
                now,
                stealDelayMs: 1000
              }
              // Tick after tick, each claim applied: the resumed walk misses nothing a whole walk finds.
              for (let tick = 0; tick < 4; tick++) {
                const picked = pickClaims(ctx, [{ job: j, frags }], slots)
                expect(picked.map((t) => t.path)).toEqual(wholeWalk(ctx, j, frags, slots))
                for (const t of picked)
                  frags.set(t.path, newClaim(t.register, self, 1, t.attempt, t.hostLost, 0))
              }
            }),
            { numRuns: 20 }
          )
      ),
      { numRuns: 50 }
    )
  })
})

/** The claim decision as a walk of every leaf of the job (the model pickClaims must agree with). */
function wholeWalk(
  ctx: ClaimContext,
  job: JobRegister,
  frags: ReadonlyMap<string, FragmentRegister>,
  slots: number
): string[] {
  const own: string[] = []
  const candidates: Array<{ path: string; rank: number }> = []
  for (const [path, reg] of leafFragments(job.spec, frags)) {
    const key = `frag/${job.id}/${job.specHash}/${path}`
    if (claimability(reg, ctx.leaseLive, key) === null) continue
    const rank = rankOf(key, ctx.self, ctx.peers)
    if (rank === 0) {
      own.push(path)
      if (own.length >= slots) break
    } else candidates.push({ path, rank })
  }
  const steals: string[] = []
  if (own.length < slots)
    for (let i = candidates.length - 1; i >= 0 && steals.length < slots; i--) {
      const { path, rank } = candidates[i] as { path: string; rank: number }
      if (ctx.now >= rank * ctx.stealDelayMs) steals.push(path)
    }
  return [...own, ...steals].slice(0, slots)
}

describe('claim decisions at their edges', () => {
  const solo = [{ id: 'pa', capacity: 1 }]
  const base = (over: Partial<ClaimContext> = {}): ClaimContext => ({
    self: 'pa',
    peers: solo,
    leaseLive: () => true,
    claimableSince: () => 0,
    now: 0,
    stealDelayMs: 1000,
    ...over
  })
  const failed = (reg: FragmentRegister): FragmentRegister => ({
    top: reg.top,
    claim: {
      ...(reg.claim as NonNullable<FragmentRegister['claim']>),
      phase: 'RUNNABLE',
      reason: 'EXIT_CODE'
    }
  })

  it('among jobs of one priority, the older goes first, then the smaller id', () => {
    const one = (jobs: JobRegister[]) =>
      pickClaims(
        base(),
        jobs.map((job) => ({ job, frags: new Map() })),
        1
      )[0]?.job.id
    expect(one([job('b', 1, 0, 2), job('a', 1, 0, 1)])).toBe('a')
    expect(one([job('a', 1, 0, 2), job('b', 1, 0, 1)])).toBe('b')
    expect(one([job('b', 1, 0, 1), job('a', 1, 0, 1)])).toBe('a')
    expect(one([job('a', 1, 0, 1), job('b', 1, 0, 1)])).toBe('a')
    expect(one([job('old', 1, 0, 1), job('urgent', 1, 9, 5)])).toBe('urgent')
  })

  it('a register without a claim is claimable as a first try', () => {
    const j = job('j', 1)
    const picked = pickClaims(base(), [{ job: j, frags: new Map([['0', { top: 0, claim: null }]]) }], 1)
    expect(picked.map((t) => [t.path, t.attempt, t.hostLost])).toEqual([['0', 1, 0]])
  })

  it('a failed try waits out its backoff on this observer clock, and without a backoff is retried at once', () => {
    const j = job('j', 1)
    const reg = failed(newClaim(undefined, 'pa', 1, 1, 0, 0))
    const frags = new Map([['0', reg]])
    const at = (now: number) =>
      pickClaims(base({ now, claimableSince: () => 9_000, retryDelayMs: () => 1000 }), [{ job: j, frags }], 1)
    expect(at(9_999)).toEqual([])
    expect(at(10_000).map((t) => t.attempt)).toEqual([1])
    expect(pickClaims(base(), [{ job: j, frags }], 1)).toHaveLength(1)
  })

  it('steals wait rank × stealDelay from when the fragment became claimable', () => {
    const j = job('j', 1)
    // Self is not among the ranked peers: every fragment is a steal at rank 1.
    const ctx = (now: number) =>
      base({ peers: [{ id: 'pb', capacity: 1 }], now, claimableSince: () => 9_500 })
    expect(pickClaims(ctx(10_499), [{ job: j, frags: new Map() }], 5)).toEqual([])
    expect(pickClaims(ctx(10_500), [{ job: j, frags: new Map() }], 5)).toHaveLength(1)
  })

  it('a capped job gives no more steals than its allowance', () => {
    const j = job('j', 6)
    const picked = pickClaims(
      base({
        peers: [{ id: 'pb', capacity: 1 }],
        now: 10_000,
        cap: () => ({ peers: [{ id: 'pb', capacity: 1 }], allowance: 2 })
      }),
      [{ job: j, frags: new Map() }],
      5
    )
    expect(picked).toHaveLength(2)
  })

  it('owned fragments and steals together never exceed the free slots', () => {
    const peers = [
      { id: 'pa', capacity: 1 },
      { id: 'pb', capacity: 1 }
    ]
    const j = job('j', 40)
    for (let slots = 1; slots <= 40; slots++) {
      const picked = pickClaims(base({ peers, now: 10_000 }), [{ job: j, frags: new Map() }], slots)
      expect(picked).toHaveLength(slots)
      expect(new Set(picked.map((t) => t.path)).size).toBe(slots)
    }
  })

  it('capShare: own slots minus own runs, and the cap minus the live RUNNING claims seen', () => {
    const j = job('j', 4)
    const running = (holder: string): FragmentRegister => newClaim(undefined, holder, 1, 1, 0, 0)
    const frags = new Map<string, FragmentRegister>([
      ['0', running('pb')],
      ['1', running('dead')],
      ['2', { top: 0, claim: null }],
      ['3', failed(running('pc'))]
    ])
    const owners = [
      { id: 'pz', capacity: 1 },
      { id: 'pa', capacity: 3 }
    ]
    const share = (over: { cap?: number; localRunning?: number; self?: string }) =>
      capShare({
        job: j,
        cap: over.cap ?? 10,
        self: over.self ?? 'pa',
        owners,
        localRunning: over.localRunning ?? 1,
        frags,
        leaseLive: (holder) => holder !== 'dead'
      })
    expect(share({})).toEqual({ allowance: 2, seen: 2 })
    expect(share({ cap: 2 })).toEqual({ allowance: 1, seen: 2 })
    expect(share({ localRunning: 0 })).toEqual({ allowance: 3, seen: 2 })
    // A daemon that owns no slot of the job may start none.
    expect(share({ self: 'nobody', localRunning: 0 })).toEqual({ allowance: 0, seen: 2 })
  })
})

describe('slots shared by weight', () => {
  const running: FragmentRegister = {
    top: 1,
    claim: { epoch: 1, holder: 'pb', incarnation: 1, seq: 1, attempt: 1, phase: 'RUNNING', hostLost: 0 }
  }
  const ctx: ClaimContext = {
    self: 'pa',
    peers: [{ id: 'pa', capacity: 1 }],
    leaseLive: () => true,
    claimableSince: () => 0,
    // Job ids starting with w are of a warm task that holds 16 fragments per slot.
    weight: (j) => (j.id.startsWith('w') ? 1 / 16 : 1),
    now: 0,
    stealDelayMs: 1000
  }

  it('a higher-priority cold job with nothing to claim here leaves the free part of a slot to a warm one', () => {
    // (Found by a red-team review: the walk stopped at the first job that could not fit.)
    const cold = job('cold', 4, 10)
    const frags = new Map<string, FragmentRegister>([0, 1, 2, 3].map((i) => [String(i), running]))
    const picked = pickClaims(
      ctx,
      [
        { job: cold, frags },
        { job: job('warm', 100, 0), frags: new Map() }
      ],
      0.5
    )
    expect(picked.map((t) => t.job.id)).toEqual(Array(8).fill('warm'))
  })

  it('a higher-priority cold job with a fragment to claim keeps the room: no warm job takes it', () => {
    const picked = pickClaims(
      ctx,
      [
        { job: job('cold', 4, 10), frags: new Map() },
        { job: job('warm', 100, 0), frags: new Map() }
      ],
      1.5
    )
    expect(picked.map((t) => t.job.id)).toEqual(['cold'])
  })
})
