import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { chooseFragmentSize, updateSecondsPerItem } from '../../../src/core/sizing.ts'

describe('automatic fragment size', () => {
  it('is at least 1, spreads over the slots, and fits a quarter of the lifespan when measured', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.integer({ min: 1, max: 512 }),
        fc.double({ min: 0.001, max: 3600, noNaN: true }),
        fc.double({ min: 0.0001, max: 100, noNaN: true }),
        (items, slots, timeoutSeconds, secondsPerItem) => {
          const size = chooseFragmentSize({ items, slots, timeoutSeconds, secondsPerItem, samples: 5 })
          expect(size).toBeGreaterThanOrEqual(1)
          expect(size).toBeLessThanOrEqual(Math.max(1, Math.ceil(items / (4 * slots))))
          if (size > 1) expect(size * secondsPerItem).toBeLessThanOrEqual(0.25 * timeoutSeconds + 1e-9)
        }
      )
    )
  })
  it('uses the task hint until enough fragments were measured', () => {
    expect(chooseFragmentSize({ items: 10_000, slots: 4, timeoutSeconds: 60, hint: 50 })).toBe(50)
    expect(
      chooseFragmentSize({
        items: 10_000,
        slots: 4,
        timeoutSeconds: 60,
        hint: 50,
        secondsPerItem: 1,
        samples: 2
      })
    ).toBe(50)
    expect(
      chooseFragmentSize({
        items: 10_000,
        slots: 4,
        timeoutSeconds: 60,
        hint: 50,
        secondsPerItem: 1,
        samples: 3
      })
    ).toBe(15)
    expect(chooseFragmentSize({ items: 10_000, slots: 4, timeoutSeconds: 3600 })).toBe(625)
    expect(chooseFragmentSize({ items: 3, slots: 8, timeoutSeconds: 1 })).toBe(1)
  })
  it('averages measurements', () => {
    expect(updateSecondsPerItem(undefined, 2)).toBe(2)
    expect(updateSecondsPerItem(2, 4)).toBeCloseTo(2.4)
  })
})
