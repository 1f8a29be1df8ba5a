import { cpSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DaemonProcess, FAST, sleep, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import {
  fragments,
  health,
  lines,
  output,
  peers,
  submit,
  TEST_CONFIG,
  waitMeshReady,
  waitState
} from './helpers.ts'

const CONFIG = TEST_CONFIG

describe('membership, durability and joins with real daemons', () => {
  let daemons: DaemonProcess[] = []
  afterEach(async () => {
    await stopAll(daemons)
    daemons = []
  })

  it('a daemon that joins after a job finished serves its status and output', async () => {
    daemons = await startMesh({ count: 2, config: CONFIG })
    const [a, b] = daemons as [DaemonProcess, DaemonProcess]
    const items = Array.from({ length: 30 }, (_, i) => i)
    const j = await submit(a.api, { task: 'echo', items, fragmentSize: 4 })
    await waitState(a.api, j.id, 'SUCCEEDED')
    const late = new DaemonProcess({ name: 'late', config: CONFIG, bootstrap: [b.addr] })
    daemons.push(late)
    await late.start()
    // No gossip is re-sent: only anti-entropy on the new connection can bring the job.
    const seen = await waitState(late.api, j.id, 'SUCCEEDED', 15_000)
    expect(seen.statusSummary.SUCCEEDED).toBe(8)
    expect((await output(late.api, j.id)).text).toBe(lines(items))
  })

  it('a new daemon takes its share of runnable fragments; running ones stay where they are', async () => {
    daemons = await startMesh({ count: 2, config: { ...CONFIG, capacity: 1 } })
    const [a] = daemons as [DaemonProcess]
    await waitMeshReady(daemons.map((d) => d.api))
    const j = await submit(a.api, { task: 'nap', range: { start: 0, end: 40 }, fragmentSize: 1 })
    await waitUntil('the job to start', async () =>
      (await fragments(a.api, j.id)).some((f) => f.state === 'SUCCEEDED')
    )
    const joiner = new DaemonProcess({
      name: 'joiner',
      config: { ...CONFIG, capacity: 1 },
      bootstrap: [a.addr]
    })
    daemons.push(joiner)
    await joiner.start()
    await waitState(a.api, j.id, 'SUCCEEDED', 60_000)
    const fs = await fragments(a.api, j.id)
    const byJoiner = fs.filter((f) => f.peer === joiner.peerId)
    expect(byJoiner.length).toBeGreaterThan(0)
    // Nothing ran twice: every fragment was claimed once (epoch 1), none moved while running.
    for (const f of fs) expect(f.epoch).toBe(1)
  })

  it('kill -9 of the accepting daemon right after its 202: the job runs elsewhere, and again after restart', async () => {
    daemons = await startMesh({ count: 2, config: CONFIG })
    const [a, b] = daemons as [DaemonProcess, DaemonProcess]
    await waitMeshReady(daemons.map((d) => d.api))
    const j = await submit(a.api, { task: 'echo', items: ['p', 'q', 'r'] })
    expect(j.replicas).toBe(2)
    a.kill('SIGKILL')
    await waitState(b.api, j.id, 'SUCCEEDED', 30_000)
    expect((await output(b.api, j.id)).text).toBe('p\nq\nr\n')
    await a.waitExit()
    await a.start()
    await waitState(a.api, j.id, 'SUCCEEDED', 30_000)
  })

  it('a daemon restarted with its last writes lost holds no phantom leases', async () => {
    daemons = await startMesh({ count: 3, config: CONFIG })
    const [a, b] = daemons as [DaemonProcess, DaemonProcess]
    await waitMeshReady(daemons.map((d) => d.api))
    // An older copy of b's data dir, from before it claimed anything.
    await b.stop()
    const snapshot = `${b.dataDir}.snapshot`
    cpSync(b.dataDir, snapshot, { recursive: true })
    await b.start()
    await waitMeshReady(daemons.map((d) => d.api))
    const items = Array.from({ length: 24 }, (_, i) => `w${i}`)
    // b is slow only in the life that loses its writes: its next life may run its own fragments again.
    const flag = join(a.dataDir, 'slow-flag')
    writeFileSync(flag, '')
    const j = await submit(a.api, {
      task: 'slow-on',
      items,
      fragmentSize: 1,
      env: { SLOW_PEER: b.peerId, SLOW_FLAG: flag }
    })
    const held = await waitUntil('b to hold fragments', async () => {
      const mine = (await fragments(a.api, j.id)).filter((f) => f.peer === b.peerId && f.state === 'RUNNING')
      return mine.length > 0 ? mine : null
    })
    // Crash b and bring it back with the writes of its last life gone.
    b.kill('SIGKILL')
    await b.waitExit()
    rmSync(b.dataDir, { recursive: true, force: true })
    cpSync(snapshot, b.dataDir, { recursive: true })
    rmSync(snapshot, { recursive: true, force: true })
    rmSync(flag)
    const t0 = Date.now()
    await b.start()
    // b's fragments of the lost life run again (the task sleeps 60 s only on b, and b's
    // lost-life runs cannot report), long before any lease could have run out.
    await waitState(a.api, j.id, 'SUCCEEDED', 40_000)
    expect(Date.now() - t0).toBeLessThan(30_000)
    const fs = await fragments(a.api, j.id)
    for (const h of held) {
      const f = fs.find((x) => x.path === h.path)
      expect(f?.epoch).toBeGreaterThan(h.epoch)
    }
    await waitState(b.api, j.id, 'SUCCEEDED', 20_000)
  })

  it('a daemon whose event loop was stalled does not declare a healthy mesh dead when it wakes', async () => {
    daemons = await startMesh({ count: 3, config: CONFIG })
    const [a] = daemons as [DaemonProcess]
    await waitMeshReady(daemons.map((d) => d.api))
    // Stalled for 4 × suspectMs: longer than it takes to call a silent peer dead.
    a.kill('SIGSTOP')
    await sleep(4 * FAST.suspectMs)
    a.kill('SIGCONT')
    const states = new Set<string>()
    const until = Date.now() + 3000
    while (Date.now() < until) {
      for (const p of await peers(a.api)) if (p.peerId !== a.peerId) states.add(p.state)
      await sleep(25)
    }
    expect([...states]).toEqual(['alive'])
    const stalls = await (await fetch(`${a.api}/metrics`)).text()
    expect(stalls).toMatch(/shoal_stalls_total [1-9]/)
    expect((await health(a.api)).peers).toBe(3)
  })
})
