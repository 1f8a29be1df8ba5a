import type { Json, ResolvedSpec } from './spec.ts'

/**
 * Fragment paths: a top-level fragment's path is its index ("7"); a fragment split on timeout
 * has children "7.0" (first half of its items) and "7.1". Every daemon derives the same items
 * for a path from the stored spec alone.
 */

/** Half-open item interval [lo, hi) of a fragment path. Throws on a malformed path. */
export function itemInterval(
  spec: Pick<ResolvedSpec, 'itemCount' | 'fragmentSize'>,
  path: string
): [number, number] {
  const parts = path.split('.')
  const index = parseIndex(parts[0])
  const count = Math.ceil(spec.itemCount / spec.fragmentSize)
  if (index >= count) throw new RangeError(`fragment index ${index} out of range (${count} fragments)`)
  let lo = index * spec.fragmentSize
  let hi = Math.min(lo + spec.fragmentSize, spec.itemCount)
  for (const part of parts.slice(1)) {
    if (part !== '0' && part !== '1') throw new RangeError(`bad fragment path ${path}`)
    if (hi - lo < 2) throw new RangeError(`fragment ${path} cannot be split further`)
    const mid = lo + Math.ceil((hi - lo) / 2)
    if (part === '0') hi = mid
    else lo = mid
  }
  return [lo, hi]
}

function parseIndex(s: string | undefined): number {
  if (s === undefined || !/^(0|[1-9][0-9]*)$/.test(s)) throw new RangeError(`bad fragment path ${s}`)
  return Number(s)
}

/** The item at a position of the job: from `items`, or the integer of `range`. */
export function itemAt(spec: Pick<ResolvedSpec, 'items' | 'range'>, position: number): Json {
  if (spec.items !== undefined) return spec.items[position] as Json
  if (spec.range !== undefined) return spec.range.start + position
  throw new RangeError('spec has neither items nor range')
}

/** The items of a fragment, in order. */
export function fragmentItems(spec: ResolvedSpec, path: string): Json[] {
  const [lo, hi] = itemInterval(spec, path)
  if (spec.items !== undefined) return spec.items.slice(lo, hi)
  const out: Json[] = []
  for (let i = lo; i < hi; i++) out.push(itemAt(spec, i))
  return out
}

/** Top-level fragment paths, in order. */
export function topLevelPaths(spec: Pick<ResolvedSpec, 'fragmentCount'>): string[] {
  const out: string[] = []
  for (let i = 0; i < spec.fragmentCount; i++) out.push(String(i))
  return out
}

/** Compare two fragment paths in output order ("2" < "10", "3.0" < "3.1" < "4"). */
export function comparePaths(a: string, b: string): number {
  const pa = a.split('.').map(Number)
  const pb = b.split('.').map(Number)
  const n = Math.min(pa.length, pb.length)
  for (let i = 0; i < n; i++) {
    const d = (pa[i] as number) - (pb[i] as number)
    if (d !== 0) return d
  }
  return pa.length - pb.length
}

/** Encode one item as a stdin line: strings as-is, other JSON values as JSON. */
export function itemLine(item: Json): string {
  return typeof item === 'string' ? item : JSON.stringify(item)
}
