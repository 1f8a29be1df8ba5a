import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { resolveSpec } from '../../../src/core/spec.ts'
import {
  comparePaths,
  fragmentItems,
  itemInterval,
  itemLine,
  topLevelPaths
} from '../../../src/core/split.ts'

describe('split', () => {
  it('covers every item exactly once, in order, for random sizes (items and range)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 400 }),
        fc.integer({ min: 1, max: 60 }),
        fc.integer(),
        (n, size, start) => {
          const items = Array.from({ length: n }, (_, i) => `x${i}`)
          const byItems = resolveSpec({ task: 't', items, fragmentSize: size }, {})
          const byRange = resolveSpec({ task: 't', range: { start, end: start + n }, fragmentSize: size }, {})
          expect(byItems.fragmentCount).toBe(Math.ceil(n / size))
          const paths = topLevelPaths(byItems)
          expect(paths.flatMap((p) => fragmentItems(byItems, p))).toEqual(items)
          expect(paths.flatMap((p) => fragmentItems(byRange, p))).toEqual(items.map((_, i) => start + i))
          for (const p of paths) {
            const got = fragmentItems(byItems, p).length
            expect(got).toBeGreaterThan(0)
            expect(got).toBeLessThanOrEqual(size)
          }
        }
      )
    )
  })

  it('split children cover their parent exactly, for random split trees', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 2, max: 64 }),
        fc.array(fc.boolean(), { maxLength: 200 }),
        (n, size, coin) => {
          const spec = resolveSpec({ task: 't', range: { start: 0, end: n }, fragmentSize: size }, {})
          let flip = 0
          const leaves = (path: string): string[] => {
            const [lo, hi] = itemInterval(spec, path)
            if (hi - lo >= 2 && coin[flip++ % Math.max(coin.length, 1)] === true) {
              return [...leaves(`${path}.0`), ...leaves(`${path}.1`)]
            }
            return [path]
          }
          const all = topLevelPaths(spec).flatMap(leaves)
          expect([...all].sort(comparePaths)).toEqual(all)
          expect(all.flatMap((p) => fragmentItems(spec, p))).toEqual(Array.from({ length: n }, (_, i) => i))
        }
      )
    )
  })

  it('rejects malformed paths and paths out of range', () => {
    const spec = resolveSpec({ task: 't', range: { start: 0, end: 10 }, fragmentSize: 3 }, {})
    expect(() => itemInterval(spec, '4')).toThrow(RangeError)
    expect(() => itemInterval(spec, '01')).toThrow(RangeError)
    expect(() => itemInterval(spec, '1.2')).toThrow(RangeError)
    expect(() => itemInterval(spec, '3.0')).toThrow(RangeError) // a single item cannot split
    expect(itemInterval(spec, '3')).toEqual([9, 10])
  })

  it('orders paths numerically and depth-first', () => {
    expect(['10', '2', '3.1', '3.0', '3'].sort(comparePaths)).toEqual(['2', '3', '3.0', '3.1', '10'])
  })

  it('writes strings as-is and other values as JSON', () => {
    expect(itemLine('a b')).toBe('a b')
    expect(itemLine(7)).toBe('7')
    expect(itemLine({ k: [1, null] })).toBe('{"k":[1,null]}')
  })
})
