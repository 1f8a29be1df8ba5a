import { describe, expect, it } from 'vitest'
import { explainDialFailure, Isolation } from '../../../src/mesh/isolation.ts'

const BOOT = '/ip4/10.0.0.1/tcp/7071/p2p/12D3KooWB2HycvHomMMcPb5djXqKut1JsKDaMrnfQtEbjzFHV7sq'

describe('why a bootstrap dial failed', () => {
  it('a refused connection: nobody listens there', () => {
    const err = { name: 'Error', code: 'ECONNREFUSED', message: 'connect ECONNREFUSED 10.0.0.1:7071' }
    expect(explainDialFailure(err, undefined, true)).toMatch(/^connection refused: no daemon listens there/)
    // The code only in the message (libp2p wraps errors) is read as well.
    expect(
      explainDialFailure({ message: 'connection error: connect ECONNREFUSED x' }, undefined, true)
    ).toMatch(/^connection refused/)
  })

  it('no route to the host', () => {
    expect(explainDialFailure({ code: 'EHOSTUNREACH' }, undefined, false)).toMatch(/^no route to that host/)
    expect(explainDialFailure({ name: 'TimeoutError' }, 'unreachable', false)).toMatch(/^no route/)
  })

  it('a timeout or reset where TCP connects: the swarm keys differ', () => {
    const timeout = { name: 'TimeoutError', message: 'The operation was aborted due to timeout' }
    expect(explainDialFailure(timeout, 'connected', true)).toMatch(/swarm keys differ/)
    const reset = { name: 'EncryptionFailedError', message: 'read ECONNRESET' }
    expect(explainDialFailure(reset, 'connected', false)).toMatch(/this one has none \(set swarmKey\)/)
  })

  it('a timeout where TCP does not connect either: the host is down or filtered', () => {
    expect(explainDialFailure({ name: 'TimeoutError' }, 'timeout', true)).toMatch(/^no answer/)
    expect(explainDialFailure({ name: 'TimeoutError' }, 'refused', true)).toMatch(/^connection refused/)
  })

  it('another peer id at that address', () => {
    const err = {
      name: 'EncryptionFailedError',
      message: 'Payload identity key 12D3KooWM1 does not match expected remote identity key 12D3KooWB2'
    }
    expect(explainDialFailure(err, 'connected', true)).toMatch(/peer id changed/)
  })

  it('anything else: the first line of the error', () => {
    expect(explainDialFailure({ message: 'odd\nstack' }, 'failed', true)).toBe('odd')
  })
})

describe('isolation', () => {
  it('a daemon with a bootstrap list and no connection is isolated after afterMs, with the reason', () => {
    const iso = new Isolation([BOOT], 10_000, 0)
    expect(iso.check(9_999)).toBeUndefined()
    expect(iso.reason).toBeUndefined()
    iso.dialFailed(BOOT, 'connection refused: no daemon listens there')
    const change = iso.check(10_000)
    expect(change).toEqual({
      kind: 'isolated',
      bootstrap: [BOOT],
      reason: `no peer for 10 s: cannot reach bootstrap ${BOOT}: connection refused: no daemon listens there`
    })
    expect(iso.reason).toBe(change?.kind === 'isolated' ? change.reason : '')
    // Said once, and again only when the reason changes.
    expect(iso.check(11_000)).toBeUndefined()
    iso.dialFailed(BOOT, 'the swarm keys differ')
    expect(iso.check(12_000)).toMatchObject({
      kind: 'isolated',
      reason: expect.stringMatching(/swarm keys differ$/)
    })
  })

  it('a bootstrap not answered yet says so', () => {
    const iso = new Isolation([BOOT], 1000, 0)
    expect(iso.check(1000)).toMatchObject({
      reason: `no peer for 1 s: cannot reach bootstrap ${BOOT}: no answer yet`
    })
  })

  it('a connection ends it', () => {
    const iso = new Isolation([BOOT], 1000, 0)
    iso.dialFailed(BOOT, 'refused')
    expect(iso.check(1000)?.kind).toBe('isolated')
    iso.connected()
    expect(iso.check(1001)).toEqual({ kind: 'rejoined' })
    expect(iso.reason).toBeUndefined()
    expect(iso.check(5000)).toBeUndefined()
  })

  it('the first daemon of a mesh (no bootstrap, never a peer) is not isolated', () => {
    const iso = new Isolation([], 1000, 0)
    expect(iso.check(1_000_000)).toBeUndefined()
    expect(iso.reason).toBeUndefined()
  })

  it('a daemon that lost every peer is isolated afterMs after the last one went', () => {
    const iso = new Isolation([], 1000, 0)
    iso.connected()
    iso.lostAll('12D3KooWpeer', 50_000)
    expect(iso.check(50_999)).toBeUndefined()
    expect(iso.check(51_000)).toMatchObject({
      kind: 'isolated',
      reason: expect.stringMatching(
        /connection to 12D3KooWpeer closed and none came back, and there is no bootstrap/
      )
    })
  })

  it('isolation counts from the start for a daemon with a bootstrap list, not from its first failure', () => {
    const iso = new Isolation([BOOT], 1000, 500)
    expect(iso.check(1499)).toBeUndefined()
    expect(iso.check(1500)?.kind).toBe('isolated')
  })
})
