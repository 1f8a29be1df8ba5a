/**
 * Isolation (issue 14, item 6): a daemon that reaches no peer for isolatedAfterMs logs a warning
 * saying why, and /v1/health shows `isolated` with the reason: a bootstrap nobody listens on, a
 * bootstrap daemon with another swarm key; and it stops being isolated once it connects.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { DaemonProcess, FAST, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { health, shoal } from './helpers.ts'

const ISOLATED_AFTER_MS = 1500
const CONFIG = { ...FAST, isolatedAfterMs: ISOLATED_AFTER_MS }
/** A well-formed address where nothing listens (port 1 on loopback), with a real peer id. */
const NOWHERE = '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWB2HycvHomMMcPb5djXqKut1JsKDaMrnfQtEbjzFHV7sq'

interface LogLine {
  level: number
  msg: string
  isolated?: boolean
  reason?: string
  bootstrap?: string[]
}
const warnings = (file: string): LogLine[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine)
    .filter((l) => l.level === 40 && l.isolated === true)

async function swarmKey(file: string): Promise<string> {
  const gen = await shoal(['keygen', '--swarm'])
  expect(gen.code).toBe(0)
  writeFileSync(file, gen.stdout)
  return file
}

describe('isolation', () => {
  const all: DaemonProcess[] = []
  afterAll(async () => {
    await stopAll(all)
  })

  it('a bootstrap nobody listens on: isolated, "connection refused", warned once in the log', async () => {
    const d = new DaemonProcess({ name: 'lonely', config: CONFIG, bootstrap: [NOWHERE] })
    all.push(d)
    d.options.logTo = join(d.dataDir, 'daemon.log')
    await d.start()
    const h = await waitUntil('lonely to be isolated', async () => {
      const x = await health(d.api)
      return x.isolated && x.isolatedReason?.includes('connection refused') ? x : null
    })
    expect(h.isolatedReason).toBe(
      `no peer for 2 s: cannot reach bootstrap ${NOWHERE}: connection refused: no daemon listens there (it is down, or on another port)`
    )
    const warned = await waitUntil('the warning', () => {
      const w = warnings(d.options.logTo as string)
      return w.length > 0 ? w : null
    })
    expect(warned[0]?.reason).toBe(h.isolatedReason)
    expect(warned[0]?.bootstrap).toEqual([NOWHERE])
    expect(warned[0]?.msg).toBe(`isolated: ${h.isolatedReason}`)
  })

  it('a daemon connected to its bootstrap is not isolated; it is once that daemon goes, and not once it is back', async () => {
    const first = new DaemonProcess({ name: 'first', config: CONFIG })
    all.push(first)
    await first.start()
    // A fixed port, so the first daemon comes back at the address the second one redials.
    const port = Number(/\/tcp\/(\d+)\//.exec(first.addr)?.[1])
    first.options.p2pPort = port
    const second = new DaemonProcess({ name: 'second', config: CONFIG, bootstrap: [first.addr] })
    all.push(second)
    await second.start()
    await waitUntil('second to connect', async () => (await health(second.api)).connections > 0)
    // Longer than isolatedAfterMs, connected: neither is isolated. (Waited for, not sampled
    // once: on a loaded machine a connection may drop and come back for a moment, and a
    // connection that takes longer than isolatedAfterMs to come up is rightly isolation until it does.)
    await new Promise((r) => setTimeout(r, ISOLATED_AFTER_MS + 1500))
    for (const d of [first, second]) {
      const h = await waitUntil(`${d.name} not isolated`, async () => {
        const x = await health(d.api)
        return !x.isolated && x.connections > 0 ? x : null
      })
      expect(h.isolatedReason, d.name).toBeUndefined()
    }
    await first.stop()
    const h = await waitUntil('second to be isolated', async () => {
      const x = await health(second.api)
      return x.isolated && x.isolatedReason?.includes('connection refused') ? x : null
    })
    expect(h.isolatedReason).toContain(first.addr)
    await first.start()
    await waitUntil('second to be back', async () => {
      const x = await health(second.api)
      return !x.isolated && x.connections > 0 ? x : null
    })
  })

  it('a bootstrap daemon with another swarm key: isolated, the reason says the keys differ', async () => {
    const keyed = new DaemonProcess({ name: 'keyed', config: CONFIG })
    all.push(keyed)
    keyed.options.config = { ...CONFIG, swarmKey: await swarmKey(join(keyed.dataDir, 'a.key')) }
    await keyed.start()
    const other = new DaemonProcess({ name: 'other-key', config: CONFIG, bootstrap: [keyed.addr] })
    all.push(other)
    other.options.config = { ...CONFIG, swarmKey: await swarmKey(join(other.dataDir, 'b.key')) }
    other.options.logTo = join(other.dataDir, 'daemon.log')
    const none = new DaemonProcess({ name: 'no-key', config: CONFIG, bootstrap: [keyed.addr] })
    all.push(none)
    await Promise.all([other.start(), none.start()])

    const h = await waitUntil('other-key to be isolated with the reason', async () => {
      const x = await health(other.api)
      return x.isolated && x.isolatedReason?.includes('swarm keys differ') ? x : null
    })
    expect(h.isolatedReason).toBe(
      `no peer for 2 s: cannot reach bootstrap ${keyed.addr}: TCP connects but the private-network handshake fails: the swarm keys differ (or that daemon has none)`
    )
    expect(warnings(other.options.logTo as string).at(-1)?.reason).toBe(h.isolatedReason)
    const n = await waitUntil('no-key to be isolated with the reason', async () => {
      const x = await health(none.api)
      return x.isolated && x.isolatedReason?.includes('swarm key') ? x : null
    })
    expect(n.isolatedReason).toContain('that daemon has a swarm key and this one has none (set swarmKey)')
    // The keyed daemon had nobody to reach: the first of its mesh, not isolated.
    expect((await health(keyed.api)).isolated).toBe(false)
  })
})
