import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { DemandForecast } from '../../../src/core/forecast.ts'

describe('the demand forecast of a warm pool', () => {
  it('sees a steady arrival rate, and asks λ × W workers with headroom', () => {
    const f = new DemandForecast(3000)
    // 40 fragments a second of 100 ms each, for 20 s: 4 busy on average.
    for (let t = 0; t < 20_000; t += 25) {
      f.arrived(t)
      f.ran(100)
    }
    expect(f.ratePerSecond(20_000)).toBeGreaterThan(38)
    expect(f.ratePerSecond(20_000)).toBeLessThan(42)
    expect(f.target(20_000, 1, 64)).toBe(5) // ceil(4 × 1.25)
    // Demand stops: the forecast falls back to the minimum.
    expect(f.target(60_000, 1, 64)).toBe(1)
  })

  it('always stays within [min, max], whatever the history', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(1000), fc.nat(5000)), { maxLength: 200 }),
        fc.nat(10),
        fc.nat(10),
        (events, a, b) => {
          const [min, max] = [Math.min(a, b), Math.max(a, b, 1)]
          const f = new DemandForecast()
          let t = 0
          for (const [gap, run] of events) {
            t += gap
            f.arrived(t)
            f.ran(run)
            const n = f.target(t, min, max)
            if (n < min || n > max || !Number.isInteger(n)) return false
          }
          return true
        }
      )
    )
  })
})
