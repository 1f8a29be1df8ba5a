import { createHash } from 'node:crypto'

/**
 * Canonical JSON: object keys sorted, `undefined` members dropped. Every hash and every
 * "compare canonical bytes" tie-break in the protocol goes through this, so two daemons that
 * hold equal values always derive equal bytes.
 */
export function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    return JSON.stringify(value) ?? 'null'
  }
  if (Array.isArray(value)) {
    return `[${value.map((v) => (v === undefined ? 'null' : canonical(v))).join(',')}]`
  }
  const obj = value as Record<string, unknown>
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort()
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(obj[k])}`).join(',')}}`
}

/** Hex sha256 of a string (deterministic; no I/O). */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/** Raw sha256 of a string. */
export function sha256Bytes(data: string): Buffer {
  return createHash('sha256').update(data).digest()
}

/**
 * cyrb53: a fast, well-mixed 53-bit string hash. Used where millions of hashes per second are
 * needed and cryptographic strength is not (rendezvous ranking, claim tie-breaks). The result is
 * an integer in [0, 2^53).
 */
export function hash53(str: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed
  let h2 = 0x41c6ce57 ^ seed
  for (let i = 0; i < str.length; i++) {
    const ch = str.charCodeAt(i)
    h1 = Math.imul(h1 ^ ch, 2654435761)
    h2 = Math.imul(h2 ^ ch, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507)
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507)
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return 4294967296 * (2097151 & h2) + (h1 >>> 0)
}

/** Total order on strings by code unit, as a comparator result. */
export function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
