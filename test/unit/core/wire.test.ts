import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { newClaim } from '../../../src/core/claim.ts'
import { resolveSpec, specHashOf } from '../../../src/core/spec.ts'
import { ReplicatedState } from '../../../src/core/state.ts'
import {
  decodeGossip,
  decodeSyncFrame,
  encodeMessage,
  type GossipMessage,
  WireError
} from '../../../src/core/wire.ts'

/** Fuzz cases per property; raise it for long runs: SHOAL_FUZZ_RUNS=5000 npm run fuzz */
const RUNS = Number(process.env.SHOAL_FUZZ_RUNS ?? 300)

const spec = resolveSpec({ task: 'echo', items: ['a', 'b'], fragmentSize: 1 }, {})
const valid: GossipMessage = {
  t: 'delta',
  from: 'peerA',
  entries: [
    {
      kind: 'job',
      id: 'j1',
      value: {
        id: 'j1',
        tenant: 'default',
        spec,
        specHash: specHashOf(spec),
        createdAt: 1,
        cancelled: false,
        acceptedBy: 'peerA'
      }
    },
    {
      kind: 'frag',
      job: 'j1',
      specHash: specHashOf(spec),
      path: '1',
      value: newClaim(undefined, 'peerA', 1, 1, 0, 5)
    }
  ]
}

describe('wire codec', () => {
  it('round-trips valid messages', () => {
    expect(decodeGossip(encodeMessage(valid))).toEqual(valid)
    const hb: GossipMessage = {
      t: 'hb',
      peer: {
        peerId: 'peerA',
        name: 'a',
        incarnation: 3,
        seq: 9,
        multiaddrs: ['/ip4/127.0.0.1/tcp/1'],
        api: 'http://127.0.0.1:1',
        capacity: 2,
        running: 0,
        synced: true,
        claiming: true,
        leaving: false,
        suspects: ['peerB']
      }
    }
    expect(decodeGossip(encodeMessage(hb))).toEqual(hb)
    expect(decodeSyncFrame(encodeMessage({ t: 'end' }))).toEqual({ t: 'end' })
    // A heartbeat's period travels with it, within bounds (a peer cannot buy itself endless silence).
    const slow: GossipMessage = { t: 'hb', peer: { ...hb.peer, every: 5000 } }
    expect(decodeGossip(encodeMessage(slow))).toEqual(slow)
    for (const every of [0, 60_001, 1.5, '5000'])
      expect(() => decodeGossip(encodeMessage({ t: 'hb', peer: { ...hb.peer, every } } as never))).toThrow(
        /peer\.every/
      )
    // The tasks it runs travel too, bounded; a daemon that does not say runs anything.
    const some: GossipMessage = { t: 'hb', peer: { ...hb.peer, tasks: ['echo', 'nap'], adHoc: false } }
    expect(decodeGossip(encodeMessage(some))).toEqual(some)
    for (const [tasks, adHoc] of [
      ['echo', false],
      [['x'.repeat(65)], false],
      [Array.from({ length: 1025 }, (_, i) => `t${i}`), false],
      [['echo'], 'no']
    ] as const)
      expect(() =>
        decodeGossip(encodeMessage({ t: 'hb', peer: { ...hb.peer, tasks, adHoc } } as never))
      ).toThrow(/peer\.(tasks|adHoc)/)
  })

  it('carries a peer\u2019s version, bounded', () => {
    const peer = {
      peerId: 'peerA',
      name: 'a',
      incarnation: 3,
      seq: 9,
      multiaddrs: [],
      api: 'http://127.0.0.1:1',
      capacity: 2,
      running: 0,
      synced: true,
      claiming: true,
      leaving: false,
      suspects: [],
      version: '1.2.3'
    }
    expect(decodeGossip(encodeMessage({ t: 'hb', peer }))).toEqual({ t: 'hb', peer })
    for (const version of ['x'.repeat(65), 7, null])
      expect(() => decodeGossip(encodeMessage({ t: 'hb', peer: { ...peer, version } } as never))).toThrow(
        /peer\.version/
      )
  })

  it('carries a deleted job only with its summary', () => {
    const job = valid.entries[0]
    if (job?.kind !== 'job') throw new Error('fixture')
    const finished = {
      state: 'SUCCEEDED' as const,
      statusSummary: { RUNNABLE: 0, RUNNING: 0, SUCCEEDED: 2, FAILED: 0, CANCELLED: 0 },
      fragments: 2,
      startedAt: 1,
      finishedAt: 2,
      compactedAt: 3
    }
    const deleted: GossipMessage = {
      t: 'delta',
      from: 'peerA',
      entries: [{ ...job, value: { ...job.value, finished, deleted: 4 } }]
    }
    expect(decodeGossip(encodeMessage(deleted))).toEqual(deleted)
    const bare = { t: 'delta', from: 'peerA', entries: [{ ...job, value: { ...job.value, deleted: 4 } }] }
    expect(() => decodeGossip(encodeMessage(bare as GossipMessage))).toThrow(/job\.deleted/)
    const bad = {
      t: 'delta',
      from: 'peerA',
      entries: [{ ...job, value: { ...job.value, finished, deleted: -1 } }]
    }
    expect(() => decodeGossip(encodeMessage(bad as GossipMessage))).toThrow(/job\.deleted/)
  })

  it('rejects random bytes with a WireError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        for (const decode of [decodeGossip, decodeSyncFrame]) {
          try {
            decode(bytes)
          } catch (err) {
            expect(err).toBeInstanceOf(WireError)
          }
        }
      }),
      { numRuns: RUNS }
    )
  })

  it('rejects mutated valid messages, leaving the state untouched', () => {
    const text = new TextDecoder().decode(encodeMessage(valid))
    fc.assert(
      fc.property(fc.nat(text.length - 1), fc.string({ minLength: 1, maxLength: 3 }), (pos, junk) => {
        const mutated = new TextEncoder().encode(text.slice(0, pos) + junk + text.slice(pos + 1))
        const state = new ReplicatedState()
        const before = state.stateDigest()
        try {
          const m = decodeGossip(mutated)
          // A mutation can still be valid (say, a different name); then it must merge cleanly.
          if (m.t === 'delta') for (const e of m.entries) state.merge(e)
        } catch (err) {
          expect(err).toBeInstanceOf(WireError)
          expect(state.stateDigest()).toBe(before)
        }
      }),
      { numRuns: RUNS }
    )
  })

  it('rejects a job whose specHash does not match its spec', () => {
    const bad = structuredClone(valid) as Extract<GossipMessage, { t: 'delta' }>
    const job = bad.entries[0]
    if (job?.kind !== 'job') throw new Error('fixture')
    job.value.spec.fragmentSize = 2
    job.value.spec.fragmentCount = 1
    expect(() => decodeGossip(encodeMessage(bad))).toThrow(/specHash/)
  })

  it('rejects oversized messages and fields', () => {
    expect(() => decodeGossip(new Uint8Array(5 * 1024 * 1024))).toThrow(WireError)
    const long = structuredClone(valid) as Extract<GossipMessage, { t: 'delta' }>
    long.from = 'x'.repeat(500)
    expect(() => decodeGossip(encodeMessage(long))).toThrow(WireError)
  })
})
