import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, FAST, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { client } from './helpers.ts'

describe('a three-daemon mesh runs a job end to end', () => {
  let mesh: DaemonProcess[] = []

  beforeAll(async () => {
    mesh = await startMesh({ count: 3, config: FAST })
  })
  afterAll(async () => {
    await stopAll(mesh)
  })

  it('each daemon lists all three as alive', async () => {
    const ids = mesh.map((d) => d.peerId).sort()
    for (const d of mesh) {
      await waitUntil(`${d.name} to see all three alive`, async () => {
        const peers = await client(d.api).peers()
        const alive = peers
          .filter((p) => p.state === 'alive')
          .map((p) => p.peerId)
          .sort()
        return JSON.stringify(alive) === JSON.stringify(ids)
      })
    }
  })

  it('runs 200 items in 40 fragments across all daemons; any daemon serves the output', async () => {
    const [a, b, c] = mesh as [DaemonProcess, DaemonProcess, DaemonProcess]
    // Every daemon must count the others as synced claimers before the job, so all take a share.
    for (const d of mesh) {
      await waitUntil(`${d.name} synced`, async () => (await client(d.api).health()).synced)
    }
    const items = Array.from({ length: 200 }, (_, i) => `item-${String(i).padStart(3, '0')}`)
    // The task sleeps a little per fragment so the work spreads over the mesh.
    const submitted = await client(a.api).submit({ task: 'slow-echo', items, fragmentSize: 5 })
    expect(submitted.fragments).toBe(40)
    const id = submitted.id

    const done = await waitUntil(
      'job to succeed',
      async () => {
        const j = await client(a.api).job(id)
        return j.state === 'SUCCEEDED' ? j : null
      },
      90_000,
      200
    )
    expect(done.statusSummary.SUCCEEDED).toBe(40)
    // All three converge on the same job state and the same fragment records.
    await waitUntil('all daemons to agree', async () => {
      const views = await Promise.all(mesh.map((d) => client(d.api).job(id)))
      return views.every((v) => v.state === 'SUCCEEDED')
    })

    expect(await client(c.api).output(id)).toEqual({
      text: items.map((x) => `${x}\n`).join(''),
      complete: true
    })

    const frags = await client(c.api).fragments(id)
    expect(frags).toHaveLength(40)
    expect(frags.map((f) => f.index)).toEqual(Array.from({ length: 40 }, (_, i) => i))
    for (const f of frags) {
      expect(f.state).toBe('SUCCEEDED')
      expect(f.attempt).toBe(1)
    }
    const ranOn = new Set(frags.map((f) => f.peer))
    expect([...ranOn].sort()).toEqual(mesh.map((d) => d.peerId).sort())

    const fragViews = await Promise.all([a, b].map((d) => client(d.api).fragments(id)))
    for (const v of fragViews) expect(v).toEqual(frags)
  })
})
