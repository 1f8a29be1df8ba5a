import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  type ClaimContext,
  capShare,
  claimability,
  newClaim,
  pickClaims,
  waterFill
} from '../../../src/core/claim.ts'
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

/** The register of a failed try, claimable again. */
const failed = (reg: FragmentRegister): FragmentRegister => ({
  top: reg.top,
  claim: {
    ...(reg.claim as NonNullable<FragmentRegister['claim']>),
    phase: 'RUNNABLE',
    reason: 'EXIT_CODE'
  }
})

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
        cap: over.cap ?? 10,
        self: over.self ?? 'pa',
        owners,
        localRunning: over.localRunning ?? 1,
        registers: [{ job: j, frags }],
        leaseLive: (holder) => holder !== 'dead'
      })
    expect(share({})).toEqual({ allowance: 2, seen: 2, live: 1 })
    expect(share({ cap: 2 })).toEqual({ allowance: 1, seen: 2, live: 1 })
    expect(share({ localRunning: 0 })).toEqual({ allowance: 3, seen: 2, live: 1 })
    // A daemon that owns no slot of the job may start none.
    expect(share({ self: 'nobody', localRunning: 0 })).toEqual({ allowance: 0, seen: 2, live: 1 })
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

describe('fair share between tenants', () => {
  const groupsArb = fc.array(
    fc.record({
      weight: fc.constantFrom(0.5, 1, 2, 3),
      load: fc.integer({ min: 0, max: 12 }),
      allowance: fc.oneof(fc.constant(Number.POSITIVE_INFINITY), fc.integer({ min: 1, max: 6 }))
    }),
    { minLength: 1, maxLength: 4 }
  )

  it('waterFill deals the whole room, within allowances, each unit to a tenant at the lowest level', () => {
    fc.assert(
      fc.property(groupsArb, fc.integer({ min: 1, max: 30 }), (raw, room) => {
        const groups = raw.map((g, i) => ({ ...g, name: `t${i}` }))
        const parts = waterFill(groups, room)
        const total = parts.reduce((a, b) => a + b, 0)
        expect(total).toBe(
          Math.min(
            room,
            groups.reduce((a, g) => a + g.allowance, 0)
          )
        )
        for (const [i, g] of groups.entries()) {
          const pi = parts[i] as number
          expect(pi).toBeLessThanOrEqual(g.allowance)
          if (pi === 0) continue
          // The last unit i got went to it at a level no higher than any other's final level
          // (a tenant at its allowance aside).
          for (const [j, h] of groups.entries()) {
            const pj = parts[j] as number
            if (j === i || pj >= h.allowance) continue
            expect((g.load + pi - 1) / g.weight).toBeLessThanOrEqual((h.load + pj) / h.weight + 1e-9)
          }
        }
      })
    )
  })

  it('claims split the free slots by deficit, priority orders within a tenant, and a resumed walk misses nothing', () => {
    fc.assert(
      fc.property(
        groupsArb,
        fc.array(fc.tuple(fc.nat(3), fc.integer({ min: 1, max: 25 }), fc.integer({ min: 0, max: 2 })), {
          minLength: 1,
          maxLength: 6
        }),
        fc.integer({ min: 1, max: 9 }),
        fc.boolean(),
        (raw, specs, slots, halves) => {
          const tenants = raw.map((g, i) => ({ ...g, name: `t${i}` }))
          const jobs = specs.map(([t, n, priority], i) => {
            const j = job(`j${i}`, n, priority, i)
            j.tenant = (tenants[t % tenants.length] as { name: string }).name
            // Some fragments were tried and failed: registered, claimable again (explicit candidates).
            const frags = new Map<string, FragmentRegister>()
            for (let f = i % 3; f < n; f += 3)
              frags.set(String(f), failed(newClaim(undefined, 'px', 1, 1, 0, 0)))
            return { job: j, frags }
          })
          // Some jobs take half a slot per fragment (a warm pool's queue).
          const weightOf = (j: JobRegister) => (halves && Number(j.id.slice(1)) % 2 === 1 ? 0.5 : 1)
          const scans = new Map<string, number>()
          const ctx: ClaimContext = {
            self: 'pa',
            peers: [{ id: 'pa', capacity: 1 }],
            leaseLive: () => true,
            claimableSince: () => 0,
            ownScan: { from: (j) => scans.get(j.id) ?? 0, reached: (j, _p, i) => scans.set(j.id, i) },
            weight: weightOf,
            tenants: {
              of: (j) => j.tenant,
              share: (name) => {
                const t = tenants.find((x) => x.name === name) as (typeof tenants)[number]
                return { weight: t.weight, running: t.load, allowance: t.allowance }
              }
            },
            now: 0,
            stealDelayMs: 1000
          }
          const left = (j: (typeof jobs)[number]) =>
            j.job.spec.fragmentCount -
            [...j.frags.values()].filter((r) => r.claim?.phase === 'RUNNING').length
          const leftOf = (name: string) =>
            jobs.filter((j) => j.job.tenant === name).reduce((a, j) => a + left(j), 0)
          for (let tick = 0; jobs.some((j) => left(j) > 0); tick++) {
            expect(tick).toBeLessThan(200)
            const withWork = tenants.filter((t) => leftOf(t.name) > 0)
            const picked = pickClaims(ctx, jobs, slots)
            const keys = picked.map((t) => t.key)
            expect(new Set(keys).size).toBe(keys.length)
            const got = new Map<string, number>()
            for (const t of picked) {
              const jr = jobs.find((j) => j.job.id === t.job.id) as (typeof jobs)[number]
              expect(jr.frags.get(t.path)?.claim?.phase).not.toBe('RUNNING')
              jr.frags.set(t.path, newClaim(t.register, 'pa', 1, t.attempt, t.hostLost, 0))
              got.set(t.job.tenant, (got.get(t.job.tenant) ?? 0) + 1)
            }
            // Work-conserving: every free slot is used while any tenant has claimable work within its allowance.
            const could = withWork.reduce(
              (a, t) => a + Math.min(t.allowance, leftOf(t.name) + (got.get(t.name) ?? 0)),
              0
            )
            const used = picked.reduce((a, t) => a + weightOf(t.job), 0)
            expect(used).toBeLessThanOrEqual(slots)
            if (!halves) expect(picked.length).toBe(Math.min(slots, could))
            else if (picked.length < could) expect(used).toBeGreaterThan(slots - 1)
            for (const t of withWork) {
              const k = got.get(t.name) ?? 0
              expect(k).toBeLessThanOrEqual(t.allowance)
              if (k === 0) continue
              for (const u of withWork) {
                const ku = got.get(u.name) ?? 0
                // u could have taken more (work left, allowance left): then t's last one was not
                // above u's level. (Levels count fragments, parts count slots: with half-slot
                // fragments they differ, and only the rest is checked.)
                if (halves || u === t || leftOf(u.name) === 0 || ku >= u.allowance) continue
                expect((t.load + k - 1) / t.weight).toBeLessThanOrEqual((u.load + ku) / u.weight + 1e-9)
              }
              // Within a tenant, a lower-priority job gets a slot only once higher ones have nothing left.
              const mine = jobs.filter((j) => j.job.tenant === t.name)
              for (const p of picked.filter((x) => x.job.tenant === t.name))
                for (const o of mine) if (o.job.spec.priority > p.job.spec.priority) expect(left(o)).toBe(0)
            }
            for (const t of tenants) t.load += got.get(t.name) ?? 0
          }
        }
      )
    )
  })

  it('a tenant stopped by a whole fragment that did not fit the rest of its part gets the room others leave', () => {
    // t1 is first in line (lower level) but has nothing; t0's part is what t1 left: half a slot
    // of a half-slot job, then a whole-slot job that did not fit. (The property test found free
    // slots left idle here.)
    const half = job('half', 1, 1)
    const whole = job('whole', 2)
    const empty = job('empty', 1)
    for (const [j, t] of [
      [half, 't0'],
      [whole, 't0'],
      [empty, 't1']
    ] as const)
      j.tenant = t
    const ctx: ClaimContext = {
      self: 'pa',
      peers: [{ id: 'pa', capacity: 1 }],
      leaseLive: () => true,
      claimableSince: () => 0,
      weight: (j) => (j.id === 'half' ? 0.5 : 1),
      tenants: {
        of: (j) => j.tenant,
        share: (t) => ({ weight: 1, running: t === 't0' ? 4 : 3, allowance: Number.POSITIVE_INFINITY })
      },
      now: 0,
      stealDelayMs: 1000
    }
    const emptyFrags = new Map([['0', newClaim(undefined, 'pa', 1, 1, 0, 0)]])
    const picked = pickClaims(
      ctx,
      [
        { job: half, frags: new Map() },
        { job: whole, frags: new Map() },
        { job: empty, frags: emptyFrags }
      ],
      3
    )
    expect(picked.map((t) => `${t.job.id}/${t.path}`)).toEqual(['half/0', 'whole/0', 'whole/1'])
  })

  it('with one tenant, the claims are those of priority alone', () => {
    fc.assert(
      fc.property(
        peersArb,
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 9 }),
        (ids, n, slots) => {
          const peers = ids.map((id) => ({ id, capacity: 2 }))
          const jobs = [
            { job: job('ja', n, 1), frags: new Map<string, FragmentRegister>() },
            { job: job('jb', n, 0), frags: new Map<string, FragmentRegister>() }
          ]
          const base: ClaimContext = {
            self: ids[0] as string,
            peers,
            leaseLive: () => true,
            claimableSince: () => 0,
            now: 5000,
            stealDelayMs: 1000
          }
          const fair = {
            ...base,
            tenants: { of: () => 'default', share: () => ({ weight: 1, running: 3, allowance: 100 }) }
          }
          expect(pickClaims(fair, jobs, slots).map((t) => t.key)).toEqual(
            pickClaims(base, jobs, slots).map((t) => t.key)
          )
        }
      )
    )
  })
})

function tjob(id: string, n: number, priority = 0, tenant = 'default', maxConcurrency?: number): JobRegister {
  const spec = resolveSpec(
    {
      task: 'echo',
      range: { start: 0, end: n },
      fragmentSize: 1,
      priority,
      ...(maxConcurrency ? { maxConcurrency } : {})
    },
    {}
  )
  return { id, tenant, spec, specHash: specHashOf(spec), createdAt: 0, cancelled: false, acceptedBy: 'p0' }
}

const soloCtx = (over: Partial<ClaimContext> = {}): ClaimContext => ({
  self: 'pa',
  peers: [{ id: 'pa', capacity: 1 }],
  leaseLive: () => true,
  claimableSince: () => 0,
  now: 0,
  stealDelayMs: 1000,
  ...over
})
const oneTenant = {
  of: () => 'default',
  share: () => ({ weight: 1, running: 0, allowance: Number.POSITIVE_INFINITY })
}

describe('fair share at its edges', () => {
  it('a job’s maxConcurrency allowance is spent across the rounds of water-filling, not granted again in each', () => {
    const capped = tjob('capped', 20, 0, 'A', 2)
    const small = tjob('small', 1, 0, 'B')
    const ctx = soloCtx({
      // This daemon owns both of the job's slots and runs none: it may start 2.
      cap: (j) => (j.id === 'capped' ? { peers: [{ id: 'pa', capacity: 2 }], allowance: 2 } : undefined),
      tenants: {
        of: (j) => j.tenant,
        share: () => ({ weight: 1, running: 0, allowance: Number.POSITIVE_INFINITY })
      }
    })
    const picked = pickClaims(
      ctx,
      [
        { job: capped, frags: new Map() },
        { job: small, frags: new Map() }
      ],
      4
    )
    const n = picked.filter((t) => t.job.id === 'capped').length
    expect(n).toBeLessThanOrEqual(2)
  })

  it('one tenant with a warm capped job claims what priority alone claims (the cap held)', () => {
    const capped = tjob('capped', 20, 1, 'default', 1)
    const cold = tjob('cold', 20, 0)
    const mk = (tenants?: ClaimContext['tenants']) =>
      soloCtx({
        weight: (j) => (j.id === 'capped' ? 0.5 : 1),
        cap: (j) => (j.id === 'capped' ? { peers: [{ id: 'pa', capacity: 1 }], allowance: 1 } : undefined),
        ...(tenants ? { tenants } : {})
      })
    const jobs = [
      { job: capped, frags: new Map<string, FragmentRegister>() },
      { job: cold, frags: new Map<string, FragmentRegister>() }
    ]
    const without = pickClaims(mk(), jobs, 1).map((t) => t.key)
    const withT = pickClaims(mk(oneTenant), jobs, 1).map((t) => t.key)
    expect(withT).toEqual(without)
  })

  it('a quarter slot free: the tenant below its share whose fragment needs a whole slot keeps the room', () => {
    const cold = tjob('cold', 10, 0, 'A')
    const warm = tjob('warm', 1000, 0, 'B')
    // A has nothing running (lowest level), B many; the daemon's free room is a quarter slot
    // each time one warm fragment ends.
    const ctx = soloCtx({
      weight: (j) => (j.id === 'warm' ? 0.25 : 1),
      tenants: {
        of: (j) => j.tenant,
        share: (t) => ({ weight: 1, running: t === 'A' ? 0 : 100, allowance: Number.POSITIVE_INFINITY })
      }
    })
    const picked = pickClaims(
      ctx,
      [
        { job: cold, frags: new Map() },
        { job: warm, frags: new Map() }
      ],
      0.25
    )
    // As a higher-priority job that does not fit keeps the room within a tenant, the tenant at the
    // lowest level keeps it across tenants (B taking every quarter starved A: found by a red team).
    expect(picked.map((t) => t.job.id)).toEqual([])
  })
})

describe('fair share with extreme weights', () => {
  it('a weight tiny beside its load (an infinite level) neither hangs the deal nor loses the room', () => {
    const parts = waterFill(
      [
        { name: 'a', weight: 5e-324, load: 1, allowance: Number.POSITIVE_INFINITY },
        { name: 'b', weight: 5e-324, load: 2, allowance: Number.POSITIVE_INFINITY }
      ],
      3
    )
    expect(parts.reduce((x, y) => x + y, 0)).toBe(3)
    const j = tjob('j', 10, 0, 'a')
    const picked = pickClaims(
      soloCtx({
        tenants: { of: (x) => x.tenant, share: () => ({ weight: 5e-324, running: 1, allowance: 100 }) }
      }),
      [{ job: j, frags: new Map() }],
      3
    )
    expect(picked).toHaveLength(3)
  })
})

describe('fair share over ticks', () => {
  it('capacity 2, B’s warm queue (4 per slot) refilling each freed quarter does not starve A’s whole-slot fragments', () => {
    const cold = tjob('cold', 100, 5, 'A') // even with a higher priority than B's job
    const warm = tjob('warm', 100_000, 0, 'B')
    const frags = { cold: new Map<string, FragmentRegister>(), warm: new Map<string, FragmentRegister>() }
    const running: string[] = []
    let load = 0
    const w = (j: JobRegister) => (j.id === 'warm' ? 0.25 : 1)
    const count = (t: string) => running.filter((k) => k.includes(t === 'A' ? '/cold/' : '/warm/')).length
    const ctx = soloCtx({
      weight: w,
      tenants: {
        of: (j) => j.tenant,
        share: (t) => ({ weight: 1, running: count(t), allowance: Number.POSITIVE_INFINITY })
      }
    })
    const jobs = [
      { job: cold, frags: frags.cold },
      { job: warm, frags: frags.warm }
    ]
    // B's queue filled the daemon before A's job arrived.
    for (let i = 0; i < 8; i++) {
      frags.warm.set(String(i), newClaim(undefined, 'pa', 1, 1, 0, 0))
      running.push(`frag/warm/x/${i}`)
    }
    load = 2
    let coldClaims = 0
    for (let tick = 0; tick < 1000; tick++) {
      // One warm fragment ends, then the scheduler ticks.
      running.shift()
      load -= 0.25
      for (const t of pickClaims(ctx, jobs, 2 - load)) {
        ;(t.job.id === 'cold' ? frags.cold : frags.warm).set(t.path, newClaim(t.register, 'pa', 1, 1, 0, 0))
        running.push(`frag/${t.job.id}/x/${t.path}`)
        load += w(t.job)
        if (t.job.id === 'cold') coldClaims++
      }
    }
    expect(coldClaims).toBeGreaterThan(0)
  })
})
