import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, sleep, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import {
  alive,
  fragments,
  health,
  lines,
  output,
  peers,
  reapPidDir,
  submit,
  TEST_CONFIG,
  waitMeshReady,
  waitState
} from './helpers.ts'

const CONFIG = TEST_CONFIG

const items = Array.from({ length: 24 }, (_, i) => `it${i}`)

describe('failover with real daemons', () => {
  let mesh: DaemonProcess[] = []
  let pidDir = ''

  afterEach(async () => {
    await stopAll(mesh)
    // Kill any task process a killed daemon left behind.
    reapPidDir(pidDir)
  })

  async function setup(n: number, config: Record<string, unknown> = CONFIG): Promise<DaemonProcess[]> {
    pidDir = mkdtempSync(join(tmpdir(), 'shoal-pids-'))
    mesh = await startMesh({ count: n, config })
    await waitMeshReady(mesh.map((d) => d.api))
    return mesh
  }

  /** Submit a job whose fragments on `slow` take `seconds`; resolves once `slow` runs some of them. */
  async function slowJobOn(submitTo: DaemonProcess, slow: DaemonProcess, seconds: number) {
    const j = await submit(submitTo.api, {
      task: 'slow-on',
      items,
      fragmentSize: 1,
      env: { SLOW_PEER: slow.peerId, SLOW_SECONDS: String(seconds), PID_DIR: pidDir }
    })
    const held = await waitUntil('the slow daemon to hold running fragments', async () => {
      const fs = await fragments(submitTo.api, j.id)
      const mine = fs.filter((f) => f.peer === slow.peerId && f.state === 'RUNNING')
      return mine.length > 0 ? mine : null
    })
    return { id: j.id, held }
  }

  it('kill -9 of a holder: its fragments run elsewhere at a higher epoch; the job succeeds, output exact', async () => {
    const [a, b, c] = await setup(3)
    const { id, held } = await slowJobOn(a as DaemonProcess, b as DaemonProcess, 60)
    b?.kill('SIGKILL')
    await waitUntil('orphans to run elsewhere at a higher epoch', async () => {
      const fs = await fragments(a?.api as string, id)
      return held.every((h) => {
        const now = fs.find((f) => f.path === h.path)
        return now !== undefined && now.peer !== b?.peerId && now.epoch > h.epoch
      })
    })
    await waitState(c?.api as string, id, 'SUCCEEDED')
    expect((await output(c?.api as string, id)).text).toBe(lines(items))
    const fs = await fragments(c?.api as string, id)
    for (const h of held) {
      const f = fs.find((x) => x.path === h.path)
      expect(f).toMatchObject({ state: 'SUCCEEDED', attempt: 1 })
      expect(f?.epoch).toBeGreaterThan(h.epoch)
    }
    const dead = await waitUntil('b to be seen dead', async () =>
      (await peers(a?.api as string)).find((p) => p.peerId === b?.peerId && p.state === 'dead')
    )
    expect(dead).toBeTruthy()
    // b's orphaned task processes outlive its kill -9; its restart reaps them.
    const orphans = readdirSync(pidDir)
      .filter((f) => f.endsWith(`.${b?.peerId}`))
      .map((f) => Number(readFileSync(join(pidDir, f), 'utf8')))
    expect(orphans.some(alive)).toBe(true)
    await b?.waitExit()
    await b?.start()
    await waitUntil('orphans to be reaped', () => orphans.every((pid) => !alive(pid)), 10_000)
    await waitState(b?.api as string, id, 'SUCCEEDED')
  })

  it('kill -9 of the bootstrap daemon mid-job: the others stay connected and finish', async () => {
    const [a, b, c] = await setup(3)
    const { id } = await slowJobOn(b as DaemonProcess, a as DaemonProcess, 60)
    a?.kill('SIGKILL')
    await waitState(b?.api as string, id, 'SUCCEEDED')
    await waitState(c?.api as string, id, 'SUCCEEDED')
    // Heartbeats between b and c now travel only over a direct connection: both stay alive.
    await sleep(2500)
    for (const [self, other] of [
      [b, c],
      [c, b]
    ] as const) {
      const view = await peers(self?.api as string)
      expect(view.find((p) => p.peerId === other?.peerId)?.state).toBe('alive')
      expect(view.find((p) => p.peerId === a?.peerId)?.state).toBe('dead')
    }
    const h = await health(b?.api as string)
    expect(h.connections).toBeGreaterThanOrEqual(1)
  })

  it('SIGSTOP a holder past suspicion, then SIGCONT: one result per fragment; the stale holder kills its runs', async () => {
    const [a, b] = await setup(3)
    const { id, held } = await slowJobOn(a as DaemonProcess, b as DaemonProcess, 40)
    // A claim is RUNNING a moment before its task starts (and writes its pid): stop b only once
    // every task it holds has started, or a task still waiting to start would stop with it.
    await waitUntil('the held tasks to start', () =>
      held.every((h) =>
        readdirSync(pidDir).some((f) => f.startsWith(`${h.path}.`) && f.endsWith(`.${b?.peerId}`))
      )
    )
    b?.kill('SIGSTOP')
    try {
      await waitState(a?.api as string, id, 'SUCCEEDED', 30_000)
    } finally {
      b?.kill('SIGCONT')
    }
    // The stale holder learns of the newer claims and kills its processes (they would sleep 40 s).
    const stalePids = readdirSync(pidDir)
      .filter((f) => f.endsWith(`.${b?.peerId}`))
      .map((f) => Number(readFileSync(join(pidDir, f), 'utf8')))
    expect(stalePids.length).toBeGreaterThanOrEqual(held.length)
    await waitUntil('stale processes to be killed', () => stalePids.every((pid) => !alive(pid)), 15_000)
    await waitState(b?.api as string, id, 'SUCCEEDED')
    // Each claim ran with its own fencing token, and a re-claim's token is higher.
    for (const h of held) {
      const tokens = readdirSync(pidDir)
        .filter((f) => f.startsWith(`${h.path}.`))
        .map((f) => ({ token: Number(f.split('.')[1]), peer: f.split('.')[2] }))
      expect(tokens.length).toBeGreaterThanOrEqual(2)
      expect(new Set(tokens.map((t) => t.token)).size).toBe(tokens.length)
      const stale = tokens.find((t) => t.peer === b?.peerId)?.token as number
      for (const t of tokens.filter((x) => x.peer !== b?.peerId)) expect(t.token).toBeGreaterThan(stale)
    }
    const views = await Promise.all(mesh.map((d) => fragments(d.api, id)))
    for (const v of views) expect(v).toEqual(views[0])
    for (const f of views[0] ?? []) {
      expect(f.state).toBe('SUCCEEDED')
      expect(f.peer).not.toBe(b?.peerId)
    }
  })

  it('a graceful stop mid-job hands work over in well under the suspicion time', async () => {
    // Suspicion is slow here (dead after 2 × 5 s): only the hand-back can explain a fast take-over.
    const [a, b] = await setup(3, { ...CONFIG, suspectMs: 5000, shutdownGraceMs: 200 })
    const { id, held } = await slowJobOn(a as DaemonProcess, b as DaemonProcess, 60)
    const t0 = Date.now()
    const exit = b?.stop()
    await waitUntil(
      'handed-back fragments to run elsewhere',
      async () => {
        const fs = await fragments(a?.api as string, id)
        return held.every((h) => {
          const f = fs.find((x) => x.path === h.path)
          return f !== undefined && f.peer !== b?.peerId && f.epoch > h.epoch
        })
      },
      20_000,
      50
    )
    const tookMs = Date.now() - t0
    expect(tookMs).toBeLessThan(5000)
    expect(await exit).toBe(0)
    await waitState(a?.api as string, id, 'SUCCEEDED')
    const left = await waitUntil('b to be seen as left', async () =>
      (await peers(a?.api as string)).find((p) => p.peerId === b?.peerId && p.state === 'left')
    )
    expect(left).toBeTruthy()
  })
})
