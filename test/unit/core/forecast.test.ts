import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  DemandForecast,
  MAX_DEPTH,
  PREFETCH_MS,
  SCHEDULE_HOLD_MS,
  SCHEDULE_LEAD_MS
} from '../../../src/core/forecast.ts'

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

  it('follows the run time as it changes, starting from the first one seen', () => {
    const f = new DemandForecast(3000)
    f.arrived(0)
    f.ran(2000) // the first run sets the mean: 1/3 per s × 2 s ≈ 0.67 busy → 1 worker
    expect(f.target(0, 0, 64)).toBe(1)
    for (let t = 0; t < 20_000; t += 100) {
      f.arrived(t)
      f.ran(t < 10_000 ? 100 : 1000) // 10 per second; runs grow tenfold half-way
      // One long run among short ones moves the mean a little, not all the way.
      if (t === 10_000) expect(f.target(t, 0, 64)).toBeLessThanOrEqual(4)
    }
    // λ ≈ 10/s; W has moved most of the way from 0.1 s to 1 s: several workers, not one or two.
    expect(f.target(20_000, 0, 64)).toBeGreaterThanOrEqual(9)
    expect(f.target(20_000, 0, 64)).toBeLessThanOrEqual(13)
  })

  it('wants no worker for a trickle long gone (with minWarm 0)', () => {
    const f = new DemandForecast(3000)
    f.arrived(0)
    f.ran(10)
    expect(f.target(60_000, 0, 8)).toBe(0)
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

  it('queues as many fragments per slot as run in about 50 ms: none before one ran, at most 16', () => {
    const f = new DemandForecast()
    expect(f.depth()).toBe(1)
    f.ran(10)
    expect(f.depth()).toBe(5)
    const quick = new DemandForecast()
    quick.ran(0.2)
    expect(quick.depth()).toBe(MAX_DEPTH)
    const slow = new DemandForecast()
    slow.ran(PREFETCH_MS * 3)
    expect(slow.depth()).toBe(1)
  })

  it('a schedule tick due soon is wanted ready from its lead time until its hold has passed', () => {
    const f = new DemandForecast()
    const tick = 100_000
    f.expect('s@1', tick, 6)
    f.expect('s@1', tick, 6) // told again of the same tick: counted once
    expect(f.target(tick - SCHEDULE_LEAD_MS - 1, 1, 4)).toBe(1) // not yet
    expect(f.scheduled(tick - SCHEDULE_LEAD_MS)).toBe(6)
    expect(f.target(tick - SCHEDULE_LEAD_MS, 1, 4)).toBe(4) // within [min, max]
    expect(f.target(tick - SCHEDULE_LEAD_MS, 1, 10)).toBe(6)
    expect(f.target(tick + SCHEDULE_HOLD_MS, 0, 10)).toBe(6)
    expect(f.target(tick + SCHEDULE_HOLD_MS + 1, 0, 10)).toBe(0) // gone, and forgotten
    expect(f.scheduled(tick)).toBe(0)
  })

  it('takes the mesh’s run time while it has none of its own, never over its own', () => {
    const f = new DemandForecast()
    expect(f.hasHistory).toBe(false)
    f.seed(20)
    expect([f.hasHistory, f.depth()]).toEqual([true, 2])
    f.seed(1)
    expect(f.depth()).toBe(2)
    const own = new DemandForecast()
    own.ran(5)
    own.seed(50)
    expect(own.depth()).toBe(10)
  })
})
