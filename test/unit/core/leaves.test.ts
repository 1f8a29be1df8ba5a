import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { comparePaths } from '../../../src/core/leaves.ts'
import { type FragmentRegister, type JobRegister, registerOrder } from '../../../src/core/register.ts'
import { resolveSpec, specHashOf } from '../../../src/core/spec.ts'
import { ReplicatedState } from '../../../src/core/state.ts'
import { jobView, jobViewOf, leafFragments } from '../../../src/core/status.ts'
import { registerArb } from './arbitraries.ts'

function job(n: number, over: Partial<JobRegister> = {}, failFast = false): JobRegister {
  const spec = resolveSpec({ task: 'echo', range: { start: 0, end: 4 * n }, fragmentSize: 4, failFast }, {})
  return {
    id: 'j1',
    tenant: 'default',
    spec,
    specHash: specHashOf(spec),
    createdAt: 0,
    cancelled: false,
    acceptedBy: 'p0',
    ...over
  }
}

/** Paths of a job of n top-level fragments, up to two splits deep, and a few out of range. */
const pathArb = (n: number): fc.Arbitrary<string> =>
  fc
    .tuple(fc.integer({ min: 0, max: n }), fc.array(fc.constantFrom('0', '1'), { maxLength: 2 }))
    .map(([i, tail]) => [String(i), ...tail].join('.'))

/** Registers with the times a view reads. */
const timedRegisterArb: fc.Arbitrary<FragmentRegister> = fc
  .tuple(registerArb, fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 9 }), fc.boolean())
  .map(([reg, s, f, ended]) =>
    reg.claim === null
      ? reg
      : { ...reg, claim: { ...reg.claim, startedAt: s, ...(ended ? { finishedAt: s + f } : {}) } }
  )

describe('the leaf index', () => {
  it('answers what a walk of every fragment answers, after any sequence of merges', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 30 }),
        fc.array(fc.tuple(fc.nat(), timedRegisterArb), { maxLength: 40 }),
        (n, cancelled, failFast, buildAt, writes) => {
          const j = job(n, { cancelled }, failFast)
          const paths = fc.sample(pathArb(n), { numRuns: 64, seed: n })
          const state = new ReplicatedState()
          state.merge({ kind: 'job', id: j.id, value: j })
          writes.forEach(([pick, value], step) => {
            // Build the index part-way (a daemon asks first after some registers arrived).
            if (step === buildAt) state.leaves(j.id)
            const path = paths[pick % paths.length] as string
            state.merge({ kind: 'frag', job: j.id, specHash: j.specHash, path, value })
            const index = state.leaves(j.id)
            const frags = state.fragmentsOf(j.id)
            expect(jobViewOf(j, index)).toEqual(jobView(j, frags))
            const leaves = leafFragments(j.spec, frags)
            expect(index?.leafCount).toBe(leaves.length)
            // The SSE order: the sum over every register of the job, as a walk computes it.
            expect(index?.order).toBe([...frags.values()].reduce((sum, r) => sum + registerOrder(r), 0))
            for (const p of paths) expect(index?.isLeaf(p)).toBe(leaves.some(([l]) => l === p))
            // Candidates: every leaf not ended, in output order (top-level unregistered ones apart).
            const open = leaves
              .filter(([path, r]) =>
                r === undefined ? path.includes('.') : !['SUCCEEDED', 'FAILED'].includes(r.claim?.phase ?? '')
              )
              .map(([path]) => path)
            expect(index?.explicitCandidates()).toEqual(open)
            const freeTop = leaves
              .filter(([path, r]) => r === undefined && !path.includes('.'))
              .map(([x]) => Number(x))
            expect([...(index?.freeTopAscending() ?? [])]).toEqual(freeTop)
            expect([...(index?.freeTopDescending() ?? [])]).toEqual([...freeTop].reverse())
            expect([...(index?.failedLeaves() ?? [])]).toEqual(
              leaves.filter(([, r]) => r?.claim?.phase === 'FAILED').map(([x]) => x)
            )
            expect([...(index?.runningRegisters() ?? [])].map(([x]) => x).sort(comparePaths)).toEqual(
              [...frags]
                .filter(([, r]) => r.claim?.phase === 'RUNNING')
                .map(([x]) => x)
                .sort(comparePaths)
            )
            expect([...(index?.runningLeaves() ?? [])].sort(comparePaths)).toEqual(
              leaves.filter(([, r]) => r?.claim?.phase === 'RUNNING').map(([x]) => x)
            )
          })
        }
      ),
      { numRuns: 300 }
    )
  })

  it('lists the leaves that failed for good in output order, under splits too, whatever order they arrived in', () => {
    const j = job(4)
    const state = new ReplicatedState()
    state.merge({ kind: 'job', id: j.id, value: j })
    state.leaves(j.id)
    const claim = (phase: 'FAILED' | 'SPLIT' | 'SUCCEEDED'): FragmentRegister => ({
      top: 1,
      claim: { epoch: 1, holder: 'p0', incarnation: 1, seq: 2, attempt: 1, phase, hostLost: 0 }
    })
    const writes: Array<[string, FragmentRegister]> = [
      ['3', claim('FAILED')],
      ['1.1', claim('FAILED')],
      ['1', claim('SPLIT')],
      ['1.0', claim('SUCCEEDED')],
      ['0', claim('FAILED')]
    ]
    for (const [path, value] of writes)
      state.merge({ kind: 'frag', job: j.id, specHash: j.specHash, path, value })
    expect([...(state.leaves(j.id)?.failedLeaves() ?? [])]).toEqual(['0', '1.1', '3'])
  })

  it('orders paths as the output does', () => {
    const paths = ['10', '2', '2.1', '2.0.1', '2.0', '1', '2.0.0']
    expect([...paths].sort(comparePaths)).toEqual(['1', '2', '2.0', '2.0.0', '2.0.1', '2.1', '10'])
  })

  it('costs nothing per fragment of a large job until its fragments are claimed', () => {
    const j = job(1_000_000)
    const state = new ReplicatedState()
    state.merge({ kind: 'job', id: j.id, value: j })
    const index = state.leaves(j.id)
    expect(index?.summary().RUNNABLE).toBe(1_000_000)
    expect(index?.explicitCandidates()).toEqual([])
    expect(jobViewOf(j, index).state).toBe('RUNNABLE')
  })
})
