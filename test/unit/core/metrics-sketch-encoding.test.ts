import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  fitSketches,
  type MetricSeries,
  REGISTER_SKETCH_BYTES,
  SeriesAggregate
} from '../../../src/core/metrics.ts'

const QS = [0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1]
const value = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e300, max: 1e300 }),
  fc.constantFrom(0, -0, 1e-300, -1e-300, 5e-324, -5e-324, 1e300, -1e300, 1, -1),
  fc.integer({ min: -1000, max: 1000 })
)
const values = fc.array(value, { minLength: 0, maxLength: 300 })
// Values whose sketch spans fewer bins than the limit (no collapse): a ratio of 10^12 a sign.
const narrow = fc.array(
  fc.oneof(
    fc.double({ noNaN: true, min: 1e-6, max: 1e6 }),
    fc.double({ noNaN: true, min: -1e6, max: -1e-6 }),
    fc.constant(0)
  ),
  { maxLength: 300 }
)

function agg(vs: number[]): SeriesAggregate {
  const a = new SeriesAggregate('t', 'n')
  for (const v of vs) a.add(v)
  return a
}
const qs = (a: SeriesAggregate) => QS.map((q) => a.quantile(q))
// The old encoding: the package's own serialiser (padded bins).
function oldSeries(a: SeriesAggregate): MetricSeries {
  const sketch = (a as unknown as { sketch: { toProto(): Uint8Array } }).sketch
  return { ...a.toSeries(), sketch: Buffer.from(sketch.toProto()).toString('base64') }
}

describe('sketch encoding round trips', () => {
  it('new encoding: quantiles equal after encode/decode, and re-encoding is stable', () => {
    fc.assert(
      fc.property(values, (vs) => {
        const a = agg(vs)
        const s = a.toSeries()
        const b = SeriesAggregate.from(s)
        expect(qs(b)).toEqual(qs(a))
        expect(b.toSeries()).toEqual(s)
      }),
      { numRuns: 400 }
    )
  })

  it('old padded encoding decodes to the same quantiles, and merges with new ones as new with new', () => {
    fc.assert(
      fc.property(narrow, narrow, (v1, v2) => {
        const a1 = agg(v1)
        const a2 = agg(v2)
        const viaNew = SeriesAggregate.from(a1.toSeries())
        viaNew.merge(a2.toSeries())
        const viaOld = SeriesAggregate.from(oldSeries(a1))
        viaOld.merge(a2.toSeries())
        const viaOld2 = SeriesAggregate.from(a2.toSeries())
        viaOld2.merge(oldSeries(a1))
        expect(qs(viaOld)).toEqual(qs(viaNew))
        expect(qs(viaOld2)).toEqual(qs(viaNew))
        expect(qs(SeriesAggregate.from(viaOld.toSeries()))).toEqual(qs(viaNew))
      }),
      { numRuns: 300 }
    )
  })

  it('coarsen: count, sum, min, max unchanged, bins sum to count, round trip exact; repeated coarsen ends', () => {
    fc.assert(
      fc.property(values, fc.integer({ min: 1, max: 8 }), (vs, times) => {
        const a = agg(vs)
        const before = a.toSeries()
        for (let i = 0; i < times; i++) a.coarsen(Math.floor(Math.max(...a.spans()) / 2))
        const after = a.toSeries()
        expect([after.count, after.sum, after.min, after.max]).toEqual([
          before.count,
          before.sum,
          before.min,
          before.max
        ])
        const b = SeriesAggregate.from(after)
        expect(qs(b)).toEqual(qs(a))
        const sk = (
          a as unknown as {
            sketch: {
              count: number
              zeroCount: number
              store: { count: number }
              negativeStore: { count: number }
            }
          }
        ).sketch
        expect(sk.store.count + sk.negativeStore.count + sk.zeroCount).toBe(sk.count)
        expect(sk.count).toBe(vs.length)
      }),
      { numRuns: 300 }
    )
  })

  it('fitSketches always fits and never changes count/sum/min/max (80 adversarial series)', () => {
    fc.assert(
      fc.property(fc.array(values, { minLength: 1, maxLength: 80 }), (perSeries) => {
        const aggs = perSeries.map((vs) => agg([...vs, 1e-300, 1e300, -1e-300, -1e300]))
        const before = aggs.map((a) => a.toSeries())
        const out = fitSketches(aggs)
        expect(out.reduce((n, s) => n + s.sketch.length, 0)).toBeLessThanOrEqual(REGISTER_SKETCH_BYTES)
        out.forEach((s, i) => {
          const b = before[i] as MetricSeries
          expect([s.count, s.sum, s.min, s.max]).toEqual([b.count, b.sum, b.min, b.max])
        })
      }),
      { numRuns: 20 }
    )
  })
})
