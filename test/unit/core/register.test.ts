import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonical, hash53 } from '../../../src/core/canonical.ts'
import { newClaim } from '../../../src/core/claim.ts'
import type { Phase } from '../../../src/core/register.ts'
import {
  claimTieBreak,
  compareClaims,
  type FinishedSummary,
  fencingToken,
  fragmentKey,
  fragmentKeyPrefix,
  isCancelled,
  isTerminal,
  type JobRegister,
  mergeFinished,
  mergeFragment,
  mergeJob,
  parseFragmentKey
} from '../../../src/core/register.ts'
import { ReplicatedState } from '../../../src/core/state.ts'
import { claimArb, entryArb, finishedArb, jobArb, registerArb } from './arbitraries.ts'

const KEY = 'frag/job1/ffff/0'
const eq = (a: unknown, b: unknown): void => {
  expect(canonical(a)).toBe(canonical(b))
}

describe('fragment register merge is a join', () => {
  it('is commutative', () => {
    fc.assert(
      fc.property(registerArb, registerArb, (a, b) => eq(mergeFragment(KEY, a, b), mergeFragment(KEY, b, a)))
    )
  })
  it('is associative', () => {
    fc.assert(
      fc.property(registerArb, registerArb, registerArb, (a, b, c) =>
        eq(mergeFragment(KEY, mergeFragment(KEY, a, b), c), mergeFragment(KEY, a, mergeFragment(KEY, b, c)))
      )
    )
  })
  it('is idempotent', () => {
    fc.assert(fc.property(registerArb, (a) => eq(mergeFragment(KEY, a, a), a)))
  })
  it('never lowers top', () => {
    fc.assert(
      fc.property(registerArb, registerArb, (a, b) => {
        const m = mergeFragment(KEY, a, b)
        expect(m.top).toBeGreaterThanOrEqual(Math.max(a.top, b.top))
      })
    )
  })
  it('orders claims totally: exactly one of a>b, b>a, or they are equal', () => {
    fc.assert(
      fc.property(claimArb, claimArb, (a, b) => {
        const ab = Math.sign(compareClaims(KEY, a, b))
        const ba = Math.sign(compareClaims(KEY, b, a))
        expect(ab).toBe(-ba)
        if (ab === 0) expect(canonical(a)).toBe(canonical(b))
      })
    )
  })
  it('terminal beats non-terminal, SUCCEEDED beats every other phase', () => {
    fc.assert(
      fc.property(claimArb, claimArb, (a, b) => {
        fc.pre(a.phase === 'SUCCEEDED' && b.phase !== 'SUCCEEDED')
        expect(compareClaims(KEY, a, b)).toBeGreaterThan(0)
      })
    )
    const running = {
      epoch: 9,
      holder: 'peerA',
      incarnation: 1,
      seq: 1,
      attempt: 1,
      phase: 'RUNNING' as const,
      hostLost: 0
    }
    const failed = { ...running, epoch: 1, phase: 'FAILED' as const }
    expect(compareClaims(KEY, failed, running)).toBeGreaterThan(0)
  })
  it('a retry round beats every failure or unfinished claim of the round before; a success beats every round', () => {
    const final = (c: { phase: string }) => c.phase === 'SUCCEEDED' || c.phase === 'SPLIT'
    fc.assert(
      fc.property(claimArb, claimArb, (a, b) => {
        fc.pre((a.generation ?? 0) > (b.generation ?? 0) && !final(a) && !final(b))
        expect(compareClaims(KEY, a, b)).toBeGreaterThan(0)
      })
    )
    fc.assert(
      fc.property(claimArb, claimArb, (a, b) => {
        fc.pre(a.phase === 'SUCCEEDED' && b.phase !== 'SUCCEEDED')
        expect(compareClaims(KEY, a, b)).toBeGreaterThan(0)
      })
    )
    const failed = {
      epoch: 3,
      holder: 'peerA',
      incarnation: 1,
      seq: 2,
      attempt: 3,
      phase: 'FAILED' as const,
      hostLost: 0
    }
    const retried = { ...failed, epoch: 4, seq: 1, attempt: 1, phase: 'RUNNABLE' as const, generation: 1 }
    expect(mergeFragment(KEY, { top: 3, claim: failed }, { top: 4, claim: retried }).claim).toEqual(retried)
    // Claims made from the retried register stay in its round.
    expect(newClaim({ top: 4, claim: retried }, 'peerB', 2, 1, 0, 0).claim?.generation).toBe(1)
  })
  it('a claim carries the history on, and a try lost with its host joins it as HOST_LOST', () => {
    const tries = [{ attempt: 1, epoch: 1, holder: 'peerA', exitCode: 2, reason: 'EXIT_CODE' as const }]
    const lostRun = {
      epoch: 2,
      holder: 'peerB',
      incarnation: 1,
      seq: 1,
      attempt: 2,
      phase: 'RUNNING' as const,
      hostLost: 0,
      startedAt: 7,
      tries
    }
    const next = newClaim({ top: 2, claim: lostRun }, 'peerC', 1, 2, 1, 9).claim
    expect(next?.tries).toEqual([
      ...tries,
      { attempt: 2, epoch: 2, holder: 'peerB', exitCode: null, reason: 'HOST_LOST', startedAt: 7 }
    ])
    const runnable = { ...lostRun, phase: 'RUNNABLE' as const }
    expect(newClaim({ top: 2, claim: runnable }, 'peerC', 1, 2, 0, 9).claim?.tries).toEqual(tries)
  })
  it('a later claim (higher epoch) beats a stale one of the same phase class', () => {
    const base = {
      holder: 'peerA',
      incarnation: 1,
      seq: 5,
      attempt: 1,
      phase: 'RUNNING' as const,
      hostLost: 0
    }
    expect(
      compareClaims(KEY, { ...base, epoch: 3, seq: 1, holder: 'peerB' }, { ...base, epoch: 2 })
    ).toBeGreaterThan(0)
  })
  it('fencing tokens are ordered like the merge and unique per claim', () => {
    fc.assert(
      fc.property(claimArb, claimArb, (a, b) => {
        fc.pre(a.phase === 'RUNNING' && b.phase === 'RUNNING')
        // Within a round; a round's claims all have higher epochs than the round before's.
        fc.pre((a.generation ?? 0) === (b.generation ?? 0))
        fc.pre(a.epoch !== b.epoch || a.holder !== b.holder || a.incarnation !== b.incarnation)
        const ta = fencingToken(KEY, a)
        const tb = fencingToken(KEY, b)
        const top21 = (c: typeof a) => Math.floor(claimTieBreak(KEY, c.holder, c.incarnation) / 2 ** 32)
        fc.pre(a.epoch !== b.epoch || top21(a) !== top21(b))
        expect(ta).not.toBe(tb)
        expect(Math.sign(ta - tb)).toBe(Math.sign(compareClaims(KEY, { ...a, seq: 1 }, { ...b, seq: 1 })))
      })
    )
  })
})

describe('retries and cancels merge by their highest count', () => {
  it('a retry seen anywhere stays counted; a cancel stands only against the retries it saw', () => {
    const job = fc.sample(jobArb, { numRuns: 1, seed: 1 })[0] as JobRegister
    const base: JobRegister = { ...job, cancelled: false }
    delete base.finished
    delete base.retries
    delete base.cancelledRetries
    const retried = { ...base, retries: 2 }
    const older = { ...base, retries: 1, cancelled: true, cancelledRetries: 1 }
    const m = mergeJob(retried, older)
    expect(m).toMatchObject({ retries: 2, cancelledRetries: 1, cancelled: true })
    expect(mergeJob(older, retried)).toMatchObject({ retries: 2, cancelledRetries: 1 })
    expect(isCancelled(m)).toBe(false)
    expect(isCancelled(mergeJob(m, { ...base, cancelled: true, cancelledRetries: 2 }))).toBe(true)
  })
})

describe('job register merge is a join', () => {
  it('is commutative, associative and idempotent', () => {
    fc.assert(
      fc.property(jobArb, jobArb, jobArb, (a, b, c) => {
        eq(mergeJob(a, b), mergeJob(b, a))
        eq(mergeJob(mergeJob(a, b), c), mergeJob(a, mergeJob(b, c)))
        eq(mergeJob(a, a), a)
      })
    )
  })
  it('keeps a delete once seen, at its earliest time, and the summary with it', () => {
    fc.assert(
      fc.property(jobArb, jobArb, (a, b) => {
        const m = mergeJob(a, b)
        const times = [a.deleted, b.deleted].filter((t) => t !== undefined)
        expect(m.deleted).toBe(times.length === 0 ? undefined : Math.min(...times))
        if (m.deleted !== undefined) expect(m.finished).toBeDefined()
      })
    )
  })
  it('keeps the smaller specHash and lists the rival under conflicts', () => {
    fc.assert(
      fc.property(jobArb, jobArb, (a, b) => {
        fc.pre(a.specHash !== b.specHash)
        const m = mergeJob(a, b)
        const [smaller, larger] = [a.specHash, b.specHash].sort()
        expect(m.specHash).toBe(smaller)
        expect(m.conflicts).toEqual([larger])
        expect(m.cancelled).toBe(a.cancelled || b.cancelled)
        expect(m.createdAt).toBe(Math.min(a.createdAt, b.createdAt))
      })
    )
  })
})

describe('replicated state converges under any delivery order', () => {
  it('same entries, shuffled and duplicated → same registers and digests', () => {
    fc.assert(
      fc.property(
        fc.array(entryArb, { minLength: 1, maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        fc.integer(),
        (entries, dupIdx, seed) => {
          const dups = dupIdx.map((i) => entries[i % entries.length]!)
          const deliveryA = [...entries, ...dups]
          const deliveryB = shuffle([...entries, ...dups, ...entries], seed)
          const a = new ReplicatedState()
          const b = new ReplicatedState()
          for (const e of deliveryA) a.merge(e)
          for (const e of deliveryB) b.merge(e)
          expect(a.stateDigest()).toBe(b.stateDigest())
          for (const id of a.jobIds()) {
            expect(a.digest(id)).toBe(b.digest(id))
            const sortKey = (xs: unknown[]) => xs.map((x) => canonical(x)).sort()
            expect(sortKey(a.entriesOf(id))).toEqual(sortKey(b.entriesOf(id)))
          }
        }
      )
    )
  })
  it('a compacted job absorbs its fragments whatever the order they arrive in', () => {
    fc.assert(
      fc.property(fc.array(entryArb, { minLength: 1, maxLength: 20 }), fc.integer(), (entries, seed) => {
        const a = new ReplicatedState()
        const b = new ReplicatedState()
        for (const e of entries) a.merge(e)
        for (const e of shuffle([...entries], seed)) b.merge(e)
        expect(a.stateDigest()).toBe(b.stateDigest())
        if (a.jobs.get('job1')?.finished !== undefined) {
          expect(a.entriesOf('job1').filter((e) => e.kind === 'frag')).toEqual([])
          expect(b.entriesOf('job1').filter((e) => e.kind === 'frag')).toEqual([])
        }
      })
    )
  })

  it('merge reports a change only when the state changed', () => {
    fc.assert(
      fc.property(entryArb, (e) => {
        const s = new ReplicatedState()
        expect(s.merge(e)).not.toBeNull()
        expect(s.merge(e)).toBeNull()
      })
    )
  })
})

function shuffle<T>(xs: T[], seed: number): T[] {
  let s = seed >>> 0 || 1
  for (let i = xs.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    const j = s % (i + 1)
    ;[xs[i], xs[j]] = [xs[j]!, xs[i]!]
  }
  return xs
}

describe('merges pinned down by mutation testing', () => {
  it('compacted summaries merge as a join: SUCCEEDED > FAILED > CANCELLED, then the smaller hash', () => {
    const rank = { CANCELLED: 0, FAILED: 1, SUCCEEDED: 2 }
    fc.assert(
      fc.property(finishedArb, finishedArb, finishedArb, (a, b, c) => {
        eq(mergeFinished(a, b), mergeFinished(b, a))
        eq(mergeFinished(mergeFinished(a, b), c), mergeFinished(a, mergeFinished(b, c)))
        eq(mergeFinished(a, a), a)
        const m = mergeFinished(a, b) as FinishedSummary
        if (a.state !== b.state) expect(m.state).toBe(rank[a.state] > rank[b.state] ? a.state : b.state)
        else if (canonical(a) !== canonical(b)) {
          const [ha, hb] = [hash53(canonical(a)), hash53(canonical(b))]
          eq(m, ha < hb ? a : b)
        }
      })
    )
    fc.assert(
      fc.property(finishedArb, (a) => {
        expect(mergeFinished(a, undefined)).toBe(a)
        expect(mergeFinished(undefined, a)).toBe(a)
      })
    )
  })

  it('no holder wins every race: at one epoch the tie-break depends on the fragment', () => {
    const wins = new Map<string, number>()
    for (let i = 0; i < 64; i++) {
      const key = `frag/job1/ffff/${i}`
      const a = {
        epoch: 2,
        holder: 'peerA',
        incarnation: 1,
        seq: 1,
        attempt: 1,
        phase: 'RUNNING' as const,
        hostLost: 0
      }
      const b = { ...a, holder: 'peerB' }
      const winner = compareClaims(key, a, b) > 0 ? a : b
      expect(winner.holder).toBe(
        claimTieBreak(key, 'peerA', 1) < claimTieBreak(key, 'peerB', 1) ? 'peerA' : 'peerB'
      )
      wins.set(winner.holder, (wins.get(winner.holder) ?? 0) + 1)
    }
    expect(wins.get('peerA')).toBeGreaterThan(8)
    expect(wins.get('peerB')).toBeGreaterThan(8)
  })

  it('job registers of one spec, accepted twice, merge as a join', () => {
    fc.assert(
      fc.property(jobArb, jobArb, jobArb, (x, y0, c0) => {
        // Same spec, so one specHash: acceptedBy, createdAt, cancelled and finished differ.
        const y = { ...y0, spec: x.spec, specHash: x.specHash }
        const c = { ...c0, spec: x.spec, specHash: x.specHash }
        eq(mergeJob(x, y), mergeJob(y, x))
        eq(mergeJob(mergeJob(x, y), c), mergeJob(x, mergeJob(y, c)))
        expect(mergeJob(x, y).conflicts).toBeUndefined()
      })
    )
  })

  it('the winning spec is never listed among its own conflicts, even when a peer sent it so', () => {
    fc.assert(
      fc.property(jobArb, jobArb, (a, b) => {
        fc.pre(a.specHash !== b.specHash)
        const [win, lose] = a.specHash < b.specHash ? [a, b] : [b, a]
        const confused = { ...lose, conflicts: [win.specHash] }
        const m = mergeJob(win, confused)
        expect(m.specHash).toBe(win.specHash)
        expect(m.conflicts).toEqual([lose.specHash])
      })
    )
  })
})

describe('claims that differ only in their payload', () => {
  it('one claim at one seq with two payloads (a bug, a replay) still merges the same everywhere', () => {
    fc.assert(
      fc.property(claimArb, claimArb, (a, b0) => {
        const b = {
          ...b0,
          epoch: a.epoch,
          holder: a.holder,
          incarnation: a.incarnation,
          seq: a.seq,
          phase: a.phase
        }
        const ra = { top: a.epoch, claim: a }
        const rb = { top: a.epoch, claim: b }
        eq(mergeFragment(KEY, ra, rb), mergeFragment(KEY, rb, ra))
      }),
      { numRuns: 300 }
    )
  })
  it('terminal phases are SUCCEEDED, SPLIT and FAILED', () => {
    expect(
      ['RUNNABLE', 'RUNNING', 'SUCCEEDED', 'SPLIT', 'FAILED'].filter((p) => isTerminal(p as Phase))
    ).toEqual(['SUCCEEDED', 'SPLIT', 'FAILED'])
  })
})

describe('fragment keys', () => {
  it('parse back into their parts, and nothing else parses', () => {
    const key = fragmentKey('j1', 'a'.repeat(32), '3.0.1')
    expect(parseFragmentKey(key)).toEqual({ jobId: 'j1', specHash: 'a'.repeat(32), path: '3.0.1' })
    for (const bad of ['job/j1', 'frag/j1/h', 'frag/j1/h/0/extra', 'frog/j1/h/0', ''])
      expect(() => parseFragmentKey(bad)).toThrow(`not a fragment key: ${bad}`)
  })

  it('a job’s prefix covers its keys and no other job’s (j1 is not j10)', () => {
    expect(fragmentKey('j1', 'h', '0').startsWith(fragmentKeyPrefix('j1'))).toBe(true)
    expect(fragmentKey('j10', 'h', '0').startsWith(fragmentKeyPrefix('j1'))).toBe(false)
  })
})
