import { describe, expect, it } from 'vitest'
import {
  fitSketches,
  METRIC_LIMITS,
  QUANTILE_RELATIVE_ERROR,
  REGISTER_SKETCH_BYTES,
  SeriesAggregate
} from '../../../src/core/metrics.ts'
import { encodeMessage } from '../../../src/core/wire.ts'

/**
 * Red-team finding: a sketch is serialised dense (every bin between its lowest and highest key,
 * both signs), so four values at the far ends of the doubles made a 44 KB sketch, and a task's
 * 64 series a 2.8 MB register, rewritten and gossiped at every flush of the job. End to end
 * (test/e2e/metrics-wide-sketch.alone.test.ts) a 120-fragment job emitting these 256 values a try
 * took 24-33 s instead of 6 s on three daemons, /v1/health answered in up to 2.6 s, and peers
 * were seen suspect. A register's sketches are now fitted to REGISTER_SKETCH_BYTES at flush.
 */
const FAR = [1e-300, 1e300, -1e-300, -1e300]

function registerBytes(series: ReturnType<typeof fitSketches>): number {
  const value = { job: 'j1', peer: 'p1', incarnation: 1, seq: 1, series, dropped: 0 }
  return encodeMessage({
    t: 'delta',
    from: 'p1',
    entries: [{ kind: 'metric', job: 'j1', peer: 'p1', value }]
  }).byteLength
}

const within = (got: number | null, want: number) =>
  expect(Math.abs((got as number) - want)).toBeLessThanOrEqual(Math.abs(want) * QUANTILE_RELATIVE_ERROR)

describe('the size of a metric register', () => {
  it('256 values at the far ends of the doubles make a register of a few hundred KiB, not megabytes', () => {
    const wide = Array.from({ length: METRIC_LIMITS.seriesOnWire }, (_, s) => {
      const a = new SeriesAggregate('t', 'w', { s: String(s) })
      for (const v of FAR) a.add(v)
      return a
    })
    // Unfitted, as before the fix: megabytes.
    expect(registerBytes(wide.map((a) => a.toSeries()))).toBeGreaterThan(2 * 1024 * 1024)
    const fitted = fitSketches(wide)
    expect(fitted.reduce((n, s) => n + s.sketch.length, 0)).toBeLessThanOrEqual(REGISTER_SKETCH_BYTES)
    expect(registerBytes(fitted)).toBeLessThan(REGISTER_SKETCH_BYTES + 32 * 1024)
    for (const s of fitted) {
      // Count, sum, min and max stay exact; the top of each sign keeps its accuracy.
      expect([s.count, s.sum, s.min, s.max]).toEqual([4, 0, -1e300, 1e300])
      const back = SeriesAggregate.from(s)
      within(back.quantile(1), 1e300)
      within(back.quantile(0), -1e300)
    }
  })

  it('ordinary series are left as they are; beside wide ones their quantiles keep the stated error', () => {
    const ordinary = Array.from({ length: 64 }, (_, s) => {
      const a = new SeriesAggregate('t', 'latency', { s: String(s) })
      for (let v = 1; v <= 1000; v++) a.add(v * (s + 1))
      return a
    })
    const before = ordinary.map((a) => a.toSeries())
    // 64 series spanning a ratio of 1,000 each: a register that fits as it is.
    expect(fitSketches(ordinary)).toEqual(before)
    const wide = Array.from({ length: 16 }, (_, s) => {
      const a = new SeriesAggregate('t', 'w', { s: String(s) })
      for (const v of FAR) a.add(v)
      return a
    })
    const fitted = fitSketches([...ordinary, ...wide])
    expect(fitted.reduce((n, s) => n + s.sketch.length, 0)).toBeLessThanOrEqual(REGISTER_SKETCH_BYTES)
    for (const [i, s] of fitted.slice(0, 64).entries()) {
      expect([s.count, s.min, s.max]).toEqual([1000, i + 1, 1000 * (i + 1)])
      const back = SeriesAggregate.from(s)
      for (const q of [0.5, 0.9, 0.99]) within(back.quantile(q), Math.ceil(1000 * q) * (i + 1))
    }
  })
})
