import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { judge, type Liveness, wasStalled } from '../../../src/core/liveness.ts'

const ORDER: Record<Liveness, number> = { alive: 0, suspect: 1, dead: 2, left: 3 }

describe('liveness judgements', () => {
  it('suspect from suspectMs of silence, dead from twice that, the boundaries included', () => {
    expect(judge(0, 1000, false)).toBe('alive')
    expect(judge(999, 1000, false)).toBe('alive')
    expect(judge(1000, 1000, false)).toBe('suspect')
    expect(judge(1999, 1000, false)).toBe('suspect')
    expect(judge(2000, 1000, false)).toBe('dead')
    expect(judge(1_000_000, 1000, false)).toBe('dead')
  })

  it('a leaving peer has left, however recently it was heard', () => {
    expect(judge(0, 1000, true)).toBe('left')
    expect(judge(5000, 1000, true)).toBe('left')
  })

  it('more silence never makes a peer look healthier (property)', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 10_000 }),
        fc.nat({ max: 10_000 }),
        fc.integer({ min: 1, max: 5000 }),
        (x, y, suspectMs) => {
          const [less, more] = x <= y ? [x, y] : [y, x]
          expect(ORDER[judge(more, suspectMs, false)]).toBeGreaterThanOrEqual(
            ORDER[judge(less, suspectMs, false)]
          )
        }
      )
    )
  })

  it('an observer was stalled only when its timer fired later than the tolerance', () => {
    expect(wasStalled(1000, 1000, 500)).toBe(false)
    expect(wasStalled(1000, 1500, 500)).toBe(false)
    expect(wasStalled(1000, 1501, 500)).toBe(true)
    // Early (a clock that the test or the runtime moved) is never a stall.
    expect(wasStalled(1000, 0, 500)).toBe(false)
    expect(wasStalled(5000, 6000, 500)).toBe(true)
  })
})
