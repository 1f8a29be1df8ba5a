import { mkdtempSync, readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DaemonProcess, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { ShoalClient } from '../../src/cli/client.ts'
import { apiError, shoal, TEST_CONFIG } from './helpers.ts'

const TOKENS = { ops: 'token-of-ops-0123456789ab', team: 'token-of-team-0123456789' }
const CONFIG = { ...TEST_CONFIG, apiTokens: TOKENS, tenants: { ops: { admin: true } } }

describe('drain and undrain', () => {
  let mesh: DaemonProcess[] = []
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
  })

  it('a drained daemon under a running job starts nothing new, the job finishes, it stays a member; undrain restores it; a restart keeps it drained', async () => {
    mesh = await startMesh({ count: 3, config: CONFIG })
    const [d1, d2, d3] = mesh as [DaemonProcess, DaemonProcess, DaemonProcess]
    const ops = (d: DaemonProcess) => new ShoalClient(d.api, { token: TOKENS.ops })
    await waitUntil(
      'the mesh',
      async () => (await ops(d1).peers()).filter((p) => p.state === 'alive').length === 3
    )
    // 60 fragments of 0.3 s on 3 × 4 slots: about 2 s of work for the mesh.
    const job = await ops(d1).submit({ task: 'nap', range: { start: 0, end: 60 }, fragmentSize: 1 })
    await waitUntil('d2 to run some', async () =>
      (await ops(d1).fragments(job.id)).some((f) => f.peer === d2.peerId && f.state === 'RUNNING')
    )
    // Drain d2 through d1 (the request is passed on to d2), as the CLI does.
    const cli = await shoal(['drain', d2.peerId], { SHOAL_API: d1.api, SHOAL_TOKEN: TOKENS.ops })
    expect(cli.code, cli.stderr).toBe(0)
    expect(cli.stdout).toMatch(/draining/)
    const drainedAt = Date.now()
    await waitUntil('every daemon to see d2 draining', async () => {
      for (const d of mesh) {
        const p = (await ops(d).peers()).find((x) => x.peerId === d2.peerId)
        if (p?.draining !== true || p.state !== 'alive') return false
      }
      return true
    })
    const done = await waitUntil(
      'the job to finish',
      async () => {
        const j = await ops(d3).job(job.id)
        return j.state === 'SUCCEEDED' ? j : undefined
      },
      60_000
    )
    expect(done.statusSummary.SUCCEEDED).toBe(60)
    // Nothing of it started on d2 after the drain (a second for the drain to take effect).
    const late = (await ops(d1).fragments(job.id)).filter(
      (f) => f.peer === d2.peerId && f.startedAt !== null && Date.parse(f.startedAt) > drainedAt + 1000
    )
    expect(late).toEqual([])
    // Still a member: alive, synced, answering; a new job runs wholly elsewhere.
    expect((await ops(d2).health()).state).toBe('alive')
    const second = await ops(d2).submit({ task: 'nap', range: { start: 0, end: 12 }, fragmentSize: 1 })
    await waitUntil(
      'the second job',
      async () => (await ops(d2).job(second.id)).state === 'SUCCEEDED',
      60_000
    )
    expect((await ops(d2).fragments(second.id)).map((f) => f.peer)).not.toContain(d2.peerId)

    // A restart keeps the drain (an operator's decision outlives the process).
    d2.kill('SIGTERM')
    await d2.waitExit()
    await d2.start()
    await waitUntil('d2 back, still draining', async () =>
      (await ops(d1).peers()).some((p) => p.peerId === d2.peerId && p.state === 'alive' && p.draining)
    )

    // Undrain, from d2 itself: it claims again.
    const back = await ops(d2).undrain()
    expect(back).toMatchObject({ peerId: d2.peerId, draining: false, self: true })
    const third = await ops(d1).submit({ task: 'nap', range: { start: 0, end: 36 }, fragmentSize: 1 })
    await waitUntil('the third job', async () => (await ops(d1).job(third.id)).state === 'SUCCEEDED', 60_000)
    expect((await ops(d1).fragments(third.id)).map((f) => f.peer)).toContain(d2.peerId)
  }, 180_000)

  it('only an admin may drain; an unknown peer is 404; draining the only daemon with a task says its jobs wait', async () => {
    const log = join(mkdtempSync(join(tmpdir(), 'shoal-drain-log-')), 'd1.log')
    mesh = await startMesh({ count: 1, config: CONFIG, logTo: () => log })
    const d = mesh[0] as DaemonProcess
    const team = new ShoalClient(d.api, { token: TOKENS.team })
    const refused = await apiError(team.drain())
    expect([refused.status, refused.code]).toEqual([403, 'FORBIDDEN'])
    expect((await team.peers())[0]?.draining).toBe(false)
    const missing = await apiError(new ShoalClient(d.api, { token: TOKENS.ops }).drain('12D3KooWnobody'))
    expect([missing.status, missing.code]).toEqual([404, 'PEER_NOT_FOUND'])
    await new ShoalClient(d.api, { token: TOKENS.ops }).drain()
    await waitUntil('the warning', () =>
      readFileSync(log, 'utf8').includes('no other daemon runs these tasks')
    )
    expect(readFileSync(log, 'utf8')).toMatch(/"tasks":\[[^\]]*"nap"/)
  })
})

describe('a drain goes to the daemon named, whatever API address it announces', () => {
  let mesh: DaemonProcess[] = []
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
  })

  it('a peer announcing another daemon’s API, or a trap’s, is drained itself, and no token leaves the daemon asked', async () => {
    // A trap that records every request (a misconfigured or hostile announcement).
    const seen: string[] = []
    const trap = createServer((req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers.authorization ?? ''}`)
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"peerId":"x","draining":true}')
    })
    await new Promise<void>((r) => trap.listen(0, '127.0.0.1', r))
    try {
      const d1 = new DaemonProcess({ name: 'd1', config: CONFIG })
      mesh = [d1]
      await d1.start()
      const trapUrl = `http://127.0.0.1:${(trap.address() as AddressInfo).port}/anything`
      // d2 says its API is d1's (as hosts that all keep the loopback default would); d3 says the trap's.
      const d2 = new DaemonProcess({
        name: 'd2',
        config: { ...CONFIG, advertiseApi: d1.api },
        bootstrap: [d1.addr]
      })
      const d3 = new DaemonProcess({
        name: 'd3',
        config: { ...CONFIG, advertiseApi: trapUrl },
        bootstrap: [d1.addr]
      })
      mesh.push(d2, d3)
      await Promise.all([d2.start(), d3.start()])
      const ops = new ShoalClient(d1.api, { token: TOKENS.ops })
      await waitUntil(
        'the mesh',
        async () => (await ops.peers()).filter((p) => p.state === 'alive').length === 3
      )
      expect(await ops.drain(d2.peerId)).toMatchObject({ peerId: d2.peerId, draining: true, self: false })
      expect(await ops.drain(d3.peerId)).toMatchObject({ peerId: d3.peerId, draining: true, self: false })
      const view = await ops.peers()
      expect(view.find((p) => p.self)?.draining).toBe(false)
      for (const d of [d2, d3])
        expect(
          (await new ShoalClient(d.api, { token: TOKENS.ops }).peers()).find((p) => p.self)?.draining
        ).toBe(true)
      expect(seen).toEqual([])
    } finally {
      await new Promise((r) => trap.close(r))
    }
  }, 120_000)
})
