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

/** An observer on a settable clock, and heartbeat records of any peer. */
function table(onTransition?: (t: Transition) => void) {
  const clock = { t: 0 }
  const m = new Membership('self', SUSPECT, HB, () => clock.t, onTransition)
  const rec = (peerId: string, seq: number, extra: Partial<MemberRecord> = {}): MemberRecord => ({
    peerId,
    incarnation: 1,
    seq,
    synced: true,
    claiming: true,
    leaving: false,
    suspects: [],
    ...extra
  })
  /** The observer runs normally until `to`: its heartbeat loop ticks every HB. */
  const runTo = (to: number) => {
    while (clock.t + HB <= to) {
      clock.t += HB
      m.tick()
    }
    clock.t = to
  }
  return { m, clock, rec, runTo }
}

describe('membership heartbeats', () => {
  it('tells what a heartbeat changed and whether the peer (re)appeared', () => {
    const { m, clock, rec, runTo } = table()
    expect(m.observe(rec('p', 1))).toEqual({ changed: true, connected: true })
    // Nothing new: a newer seq from a peer alive in the same state.
    expect(m.observe(rec('p', 2))).toEqual({ changed: false, connected: false })
    // Replays and older heartbeats are ignored.
    expect(m.observe(rec('p', 2))).toEqual({ changed: false, connected: false })
    expect(m.observe(rec('p', 1))).toEqual({ changed: false, connected: false })
    // A new state of the peer is news, but not a reconnection.
    expect(m.observe(rec('p', 3, { claiming: false }))).toEqual({ changed: true, connected: false })
    expect(m.observe(rec('p', 4, { claiming: false, synced: false }))).toEqual({
      changed: true,
      connected: false
    })
    expect(m.observe(rec('p', 5, { claiming: false, synced: false, leaving: true }))).toEqual({
      changed: true,
      connected: false
    })
    expect(m.state('p')).toBe('left')
    // A new life (incarnation) is news and a reconnection, whatever its seq.
    expect(m.observe(rec('p', 1, { incarnation: 2 }))).toEqual({ changed: true, connected: true })
    // An older life's heartbeat, even with a higher seq, is ignored.
    expect(m.observe(rec('p', 99, { incarnation: 1 }))).toEqual({ changed: false, connected: false })
    expect(m.record('p')?.incarnation).toBe(2)
    // Back from suspicion: news, not a reconnection. Back from dead: both.
    runTo(clock.t + SUSPECT)
    expect(m.state('p')).toBe('suspect')
    expect(m.observe(rec('p', 2, { incarnation: 2 }))).toEqual({ changed: true, connected: false })
    runTo(clock.t + 2 * SUSPECT)
    expect(m.state('p')).toBe('dead')
    expect(m.observe(rec('p', 3, { incarnation: 2 }))).toEqual({ changed: true, connected: true })
    expect(m.state('p')).toBe('alive')
  })

  it('a peer that restarts between two heartbeats is news and a reconnection', () => {
    const { m, rec } = table()
    m.observe(rec('p', 7))
    expect(m.observe(rec('p', 1, { incarnation: 2 }))).toEqual({ changed: true, connected: true })
  })

  it('carries at most 256 suspects in a heartbeat', () => {
    const { m, rec, runTo } = table()
    for (let i = 0; i < 300; i++) m.observe(rec(`p${i}`, 1))
    runTo(SUSPECT)
    expect(m.suspects()).toHaveLength(256)
  })

  it('a replayed heartbeat does not refresh a silent peer', () => {
    const { m, rec, runTo } = table()
    m.observe(rec('p', 5))
    runTo(SUSPECT + 100)
    expect(m.state('p')).toBe('suspect')
    expect(m.observe(rec('p', 5))).toEqual({ changed: false, connected: false })
    runTo(2 * SUSPECT)
    expect(m.state('p')).toBe('dead')
  })

  it('reports every change of state once, in order, with the record it was judged on', () => {
    const transitions: Transition[] = []
    const { m, clock, rec, runTo } = table((t) => transitions.push(t))
    m.observe(rec('p', 1))
    m.state('p')
    runTo(SUSPECT)
    m.state('p')
    m.state('p')
    runTo(2 * SUSPECT)
    m.state('p')
    m.state('p')
    m.observe(rec('p', 2))
    m.observe(rec('p', 3, { leaving: true }))
    runTo(clock.t + 10 * SUSPECT)
    m.state('p')
    expect(transitions).toEqual([
      { peerId: 'p', seq: 1, incarnation: 1, from: 'alive', to: 'suspect' },
      { peerId: 'p', seq: 1, incarnation: 1, from: 'suspect', to: 'dead' },
      { peerId: 'p', seq: 2, incarnation: 1, from: 'dead', to: 'alive' },
      { peerId: 'p', seq: 3, incarnation: 1, from: 'alive', to: 'left' }
    ])
  })

  it('works without a transition listener', () => {
    const { m, rec, runTo } = table()
    m.observe(rec('p', 1))
    runTo(3 * SUSPECT)
    expect(m.state('p')).toBe('dead')
  })

  it('a left peer is never reported dead, not even after a stall of the observer', () => {
    const transitions: Transition[] = []
    const { m, clock, rec, runTo } = table((t) => transitions.push(t))
    m.observe(rec('p', 1))
    m.observe(rec('p', 2, { leaving: true }))
    runTo(10 * SUSPECT)
    clock.t += 10 * SUSPECT // stalled
    m.tick()
    expect(m.state('p')).toBe('left')
    expect(transitions.map((t) => t.to)).toEqual(['left'])
  })

  it('a peer judged dead between two ticks stays dead through the stall that follows', () => {
    const { m, clock, rec, runTo } = table()
    m.observe(rec('p', 1))
    runTo(2 * SUSPECT - 2 * HB) // the loop last ran here
    clock.t = 2 * SUSPECT // a claim tick looks, less than two periods later: no stall
    expect(m.state('p')).toBe('dead')
    expect(m.stalls).toBe(0)
    clock.t += 3000 // then the observer stalls; forgiving it must not revive the peer
    expect(m.state('p')).toBe('dead')
    expect(m.stalls).toBe(1)
  })

  it('dead stays dead when the observer clock steps back', () => {
    const { m, clock, rec, runTo } = table()
    m.observe(rec('p', 1))
    runTo(3 * SUSPECT)
    expect(m.state('p')).toBe('dead')
    clock.t = SUSPECT / 2
    expect(m.state('p')).toBe('dead')
    expect(m.leaseLive('p', 1)).toBe(false)
  })

  it('a stall is found by the heartbeat loop itself, and two periods of lateness are not one', () => {
    const { m, clock, rec } = table()
    m.observe(rec('p', 1))
    clock.t += 2 * HB
    m.tick()
    expect(m.stalls).toBe(0)
    clock.t += 2 * HB + 1
    m.tick()
    expect(m.stalls).toBe(1)
    expect(m.forgivenMs).toBe(HB + 1)
  })

  it('lists whom it suspects or holds dead, and who suspects it', () => {
    const { m, clock, rec, runTo } = table()
    m.observe(rec('silent', 1))
    m.observe(rec('gone', 1))
    runTo(SUSPECT)
    m.observe(rec('accuser', 1, { suspects: ['x', 'self'] }))
    m.observe(rec('friend', 1, { suspects: ['x'] }))
    m.observe(rec('leaver', 1, { leaving: true, suspects: ['self'] }))
    m.observe(rec('gone', 2))
    runTo(2 * SUSPECT)
    m.observe(rec('accuser', 2, { suspects: ['self'] }))
    m.observe(rec('friend', 2))
    m.observe(rec('leaver', 2, { leaving: true, suspects: ['self'] }))
    expect(m.state('silent')).toBe('dead')
    expect(m.state('gone')).toBe('suspect')
    expect(m.suspects().sort()).toEqual(['gone', 'silent'])
    expect(m.suspectedBy()).toEqual(['accuser'])
    clock.t += 10
    m.observe(rec('accuser', 3))
    expect(m.suspectedBy()).toEqual([])
    expect(m.entries().map((e) => [e.record.peerId, e.state])).toEqual([
      ['silent', 'dead'],
      ['gone', 'suspect'],
      ['accuser', 'alive'],
      ['friend', 'alive'],
      ['leaver', 'left']
    ])
    expect(m.record('nobody')).toBeUndefined()
    expect(m.state('nobody')).toBeUndefined()
  })
})

describe('lease liveness', () => {
  it('a lease is live while its holder is alive or suspect in that incarnation', () => {
    const { m, clock, rec, runTo } = table()
    m.observe(rec('h', 1, { incarnation: 3 }))
    expect(m.leaseLive('h', 3)).toBe(true)
    runTo(SUSPECT)
    expect(m.state('h')).toBe('suspect')
    expect(m.leaseLive('h', 3)).toBe(true)
    runTo(2 * SUSPECT)
    expect(m.leaseLive('h', 3)).toBe(false)
    m.observe(rec('h', 2, { incarnation: 3 }))
    expect(m.leaseLive('h', 3)).toBe(true)
    m.observe(rec('h', 3, { incarnation: 3, leaving: true }))
    expect(m.leaseLive('h', 3)).toBe(false)
    clock.t += 1
    m.observe(rec('h', 1, { incarnation: 4 }))
    // A lease of an earlier life lapses when a newer one is heard, and only then.
    expect(m.leaseLive('h', 3)).toBe(false)
    expect(m.leaseLive('h', 4)).toBe(true)
    expect(m.superseded('h', 3)).toBe(true)
    expect(m.superseded('h', 4)).toBe(false)
    expect(m.superseded('h', 5)).toBe(false)
    expect(m.superseded('nobody', 0)).toBe(false)
  })

  it('a holder never heard from keeps its lease until the observer has listened for 2 × suspectMs', () => {
    const { m, clock } = table()
    clock.t = 2 * SUSPECT - 1
    expect(m.leaseLive('stranger', 1)).toBe(true)
    clock.t = 2 * SUSPECT
    expect(m.leaseLive('stranger', 1)).toBe(false)
  })

  it('the benefit of the doubt counts from the observer start, not from clock zero', () => {
    const clock = { t: 50_000 }
    const m = new Membership('self', SUSPECT, HB, () => clock.t)
    expect(m.leaseLive('stranger', 1)).toBe(true)
    clock.t += 2 * SUSPECT
    expect(m.leaseLive('stranger', 1)).toBe(false)
  })
})

/** A record that announces its heartbeat period (every: HB unless told otherwise). */
const announced = (extra: Partial<MemberRecord> = {}): Partial<MemberRecord> => ({ every: HB, ...extra })

describe('heartbeat budget (large meshes)', () => {
  it('keeps heartbeatMs up to 50 peers, then spreads heartbeats so at most 200 a second arrive', () => {
    const { m, rec } = table()
    for (let i = 0; i < 50; i++) m.observe(rec(`p${i}`, 1, announced()))
    expect(m.heartbeatEvery()).toBe(HB)
    for (let i = 50; i < 1000; i++) m.observe(rec(`p${i}`, 1, announced()))
    expect(m.heartbeatEvery()).toBe(5000)
    // The load each daemon receives: peers / period.
    expect((1000 * 1000) / m.heartbeatEvery()).toBeLessThanOrEqual(200)
    // A never-heard holder's lease, and a lately learned claim's, last as long as the mesh's
    // heartbeats are apart (20 s here), not the 2 s of a small mesh.
    expect(m.suspectWindow()).toBe(20_000)
    expect(m.leaseLive('never-heard', 1)).toBe(true)
  })

  it('counts only live peers, caps the period, and keeps heartbeatMs while an older peer announces none', () => {
    const { m, rec, runTo } = table()
    for (let i = 0; i < 5000; i++) m.observe(rec(`p${i}`, 1, announced()))
    expect(m.heartbeatEvery()).toBe(10_000)
    // An older daemon (no period in its heartbeats) judges us by heartbeatMs: stay at it.
    m.observe(rec('old', 1))
    expect(m.heartbeatEvery()).toBe(HB)
    // The departed do not stretch the period: all 5,001 go silent and are judged dead.
    runTo(400_000)
    for (let i = 0; i < 5000; i++) m.state(`p${i}`)
    m.state('old')
    expect(m.heartbeatEvery()).toBe(HB)
  })

  it("judges a peer's silence against the period it announces", () => {
    const { m, clock, rec, runTo } = table()
    m.observe(rec('slow', 1, announced({ every: 5000 })))
    m.observe(rec('fast', 1))
    runTo(3000)
    // 3 s of silence: the default-period peer is dead (2 × 1 s), the 5 s one is not even suspect.
    expect(m.state('fast')).toBe('dead')
    expect(m.state('slow')).toBe('alive')
    runTo(clock.t + 17_500)
    expect(m.state('slow')).toBe('suspect')
    runTo(clock.t + 20_000)
    expect(m.state('slow')).toBe('dead')
  })
})

describe('the membership stamp (what the claimers list is keyed on)', () => {
  it('stays while heartbeats bring nothing new; moves on news, on silence deadlines, on stalls', () => {
    const { m, clock, rec, runTo } = table()
    const s0 = m.stamp()
    m.observe(rec('a', 1, announced()))
    const s1 = m.stamp()
    expect(s1).not.toBe(s0) // a new peer
    runTo(200)
    m.tick()
    m.observe(rec('a', 2, announced()))
    expect(m.stamp()).toBe(s1) // a heartbeat that changes nothing
    m.observe(rec('a', 3, announced({ claiming: false })))
    const s2 = m.stamp()
    expect(s2).not.toBe(s1) // a flag changed
    // Silence: suspect exactly suspectMs after the last heartbeat (heard at 200), dead at twice.
    runTo(200 + SUSPECT - 1)
    m.tick()
    expect(m.stamp()).toBe(s2)
    clock.t = 200 + SUSPECT
    const s3 = m.stamp()
    expect(s3).not.toBe(s2)
    expect(m.state('a')).toBe('suspect')
    runTo(200 + 2 * SUSPECT - 1)
    m.tick()
    expect(m.stamp()).toBe(s3)
    clock.t = 200 + 2 * SUSPECT
    m.tick()
    expect(m.stamp()).not.toBe(s3)
    expect(m.state('a')).toBe('dead')
  })

  it('notices the silence of a peer first heard after its last rescan', () => {
    const { m, rec, runTo } = table()
    const s0 = m.stamp() // rescanned with nobody known
    m.observe(rec('late', 1, announced()))
    const s1 = m.stamp()
    expect(s1).not.toBe(s0)
    runTo(SUSPECT)
    m.tick()
    expect(m.stamp()).not.toBe(s1)
    expect(m.state('late')).toBe('suspect')
  })

  it('moves after a stall it forgave', () => {
    const { m, clock, rec } = table()
    m.observe(rec('a', 1, announced()))
    const s = m.stamp()
    clock.t = 5 * HB
    m.tick()
    expect(m.stamp()).not.toBe(s)
  })
})

describe('suspect windows (lease rules beyond membership)', () => {
  it('is the holder’s own for a known holder, the longest live period for one never heard', () => {
    const { m, rec } = table()
    m.observe(rec('slow', 1, announced({ every: 2000 })))
    m.observe(rec('slower', 1, announced({ every: 3000 })))
    m.observe(rec('fast', 1, announced()))
    expect(m.suspectWindow('fast')).toBe(SUSPECT)
    expect(m.suspectWindow('slow')).toBe(8 * SUSPECT)
    expect(m.suspectWindow('unknown')).toBe(12 * SUSPECT)
    expect(m.suspectWindow()).toBe(12 * SUSPECT)
    // A peer that left does not stretch it.
    m.observe(rec('slower', 2, announced({ every: 3000, leaving: true })))
    expect(m.suspectWindow()).toBe(8 * SUSPECT)
  })

  it('reports a peer dead at the stall that finds it dead, before anyone asks', () => {
    const transitions: Transition[] = []
    const { m, clock, rec, runTo } = table((x) => transitions.push(x))
    m.observe(rec('a', 1, announced()))
    m.state('a')
    // The loop ticks on time for 2.5 s (nobody judges a), then stalls for 3 s.
    runTo(2500)
    m.tick()
    clock.t += 3000
    m.tick()
    expect(transitions.map((x) => x.to)).toEqual(['dead'])
  })
})
