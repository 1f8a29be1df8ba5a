import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import type { Liveness } from '../../../src/core/liveness.ts'
import { type MemberRecord, Membership, type Transition } from '../../../src/core/membership.ts'

const HB = 250
const SUSPECT = 1000

/** An observer on a fake clock, and a peer whose heartbeats it may hear. */
function world() {
  let t = 0
  const transitions: Transition[] = []
  const m = new Membership(
    'self',
    SUSPECT,
    HB,
    () => t,
    (x) => transitions.push(x)
  )
  let seq = 0
  const rec = (): MemberRecord => ({
    peerId: 'p',
    incarnation: 1,
    seq: ++seq,
    synced: true,
    claiming: true,
    leaving: false,
    suspects: []
  })
  return {
    m,
    transitions,
    get now() {
      return t
    },
    /** The observer runs normally for ms: its heartbeat loop ticks every HB. */
    run(ms: number, heartbeats = false) {
      const end = t + ms
      while (t + HB <= end) {
        t += HB
        m.tick()
        if (heartbeats) m.observe(rec())
      }
      t = end
    },
    /** The observer is stalled (SIGSTOP, blocked loop) for ms: nothing of it runs. */
    stall(ms: number) {
      t += ms
    },
    beat() {
      m.observe(rec())
    }
  }
}

describe('membership judgements', () => {
  it('a peer judged dead stays dead until a newer heartbeat, whatever the observer stalls (property)', () => {
    const step = fc.oneof(
      fc.record({ k: fc.constant('run' as const), ms: fc.integer({ min: 0, max: 3000 }) }),
      fc.record({ k: fc.constant('stall' as const), ms: fc.integer({ min: 0, max: 5000 }) }),
      fc.record({ k: fc.constant('beat' as const) }),
      fc.record({ k: fc.constant('look' as const) })
    )
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const w = world()
        w.beat()
        /** The seq the peer was judged dead on, if it is. */
        let deadOn: number | undefined
        for (const s of steps) {
          if (s.k === 'run') w.run(s.ms)
          else if (s.k === 'stall') w.stall(s.ms)
          else if (s.k === 'beat') w.beat()
          const state = w.m.state('p') as Liveness
          const seq = w.m.record('p')?.seq as number
          if (deadOn !== undefined && seq === deadOn) expect(state).toBe('dead')
          if (state === 'dead') deadOn = seq
        }
        // Transitions out of dead come only with a newer record.
        let lastDead: number | undefined
        for (const x of w.transitions) {
          if (x.to === 'dead') lastDead = x.seq
          else if (x.from === 'dead') expect(x.seq).toBeGreaterThan(lastDead as number)
        }
      }),
      { numRuns: 500 }
    )
  })

  it('a peer killed long before is not brought back by a short stall of the observer', () => {
    const w = world()
    w.beat()
    w.run(10_000)
    expect(w.m.state('p')).toBe('dead')
    for (let i = 0; i < 5; i++) {
      w.stall(800) // a short SIGSTOP
      expect(w.m.state('p')).toBe('dead')
      w.run(500)
    }
  })

  it('an observer that stalls every second still judges a silent peer dead, within a few seconds', () => {
    const w = world()
    w.beat()
    const killedAt = w.now
    while (w.m.state('p') !== 'dead' && w.now - killedAt < 60_000) {
      w.run(400)
      w.stall(600) // loaded: the loop runs 600 ms late every second
    }
    expect(w.m.state('p')).toBe('dead')
    // Idle, death takes 2 × suspectMs; forgiving only the stalls at most doubles it here.
    expect(w.now - killedAt).toBeLessThanOrEqual(6 * SUSPECT)
    expect(w.m.stalls).toBeGreaterThan(0)
  })

  it('forgives the silence of a stall: a live peer is not judged dead right after one', () => {
    const w = world()
    w.run(2000, true)
    w.stall(5000) // heartbeats it sent meanwhile wait, unread, in the socket
    expect(w.m.state('p')).not.toBe('dead')
    w.beat() // the first of them is read
    expect(w.m.state('p')).toBe('alive')
    expect(w.m.stalls).toBe(1)
  })

  it('forgives each stall once', () => {
    const w = world()
    w.beat()
    w.stall(900)
    w.m.state('p')
    w.m.state('p')
    w.m.tick()
    expect(w.m.stalls).toBe(1)
    expect(w.m.forgivenMs).toBe(900 - HB)
  })
})
