import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DaemonProcess, sleep, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { ShoalClient } from '../../src/cli/client.ts'
import { slotOwners } from '../../src/core/hrw.ts'
import { alive, reapPidDir, TEST_CONFIG } from './helpers.ts'

const TOKENS = {
  teamA: 'token-of-team-a-0123456789',
  teamB: 'token-of-team-b-0123456789',
  ops: 'token-of-ops-0123456789ab'
}

/**
 * Sleeps NAP seconds; while it runs, its pid is in PID_DIR (the file goes when it ends, and a
 * killed one's pid is dead), so the test counts the processes really running, not the registers.
 */
const NAP_TASK = {
  command: [
    'sh',
    '-c',
    'f="$PID_DIR/$SHOAL_JOB_ID.$SHOAL_FRAGMENT_PATH.$SHOAL_LEASE_EPOCH"; echo $$ > "$f"; sleep "$NAP"; rm -f "$f"; cat'
  ]
}

/** Task processes alive now, by job id. */
function runningByJob(dir: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const f of readdirSync(dir)) {
    let pid: number
    try {
      pid = Number(readFileSync(join(dir, f), 'utf8'))
    } catch {
      continue // it just ended
    }
    if (!(pid > 0) || !alive(pid)) continue
    const job = f.slice(0, f.indexOf('.'))
    out.set(job, (out.get(job) ?? 0) + 1)
  }
  return out
}

/** The value of a gauge with one label in a /metrics text (undefined when absent). */
function gauge(text: string, name: string, label: string, value: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${label}="${value}"}`))
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1))
}

describe('fair share and running limits between tenants, across the mesh', () => {
  let mesh: DaemonProcess[] = []
  let pidDir = ''
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
    if (pidDir !== '') reapPidDir(pidDir)
    pidDir = ''
  })

  const as = (d: DaemonProcess, tenant: keyof typeof TOKENS) =>
    new ShoalClient(d.api, { token: TOKENS[tenant] })

  async function setup(tenants: Record<string, unknown>): Promise<DaemonProcess[]> {
    pidDir = mkdtempSync(join(tmpdir(), 'shoal-share-'))
    mesh = await startMesh({
      count: 3,
      config: {
        ...TEST_CONFIG,
        capacity: 4,
        apiTokens: TOKENS,
        tenants,
        tasks: { ...TEST_CONFIG.tasks, nap: NAP_TASK }
      }
    })
    const d1 = mesh[0] as DaemonProcess
    await waitUntil(
      'the mesh',
      async () => (await as(d1, 'ops').peers()).filter((p) => p.state === 'alive').length === 3
    )
    return mesh
  }

  it('weights 1 and 3: running fragments split 1:3 (±10 %) while both have work; when A’s job ends B uses every slot', async () => {
    const [d1, d2, d3] = (await setup({
      teamA: { weight: 1 },
      teamB: { weight: 3 },
      ops: { admin: true }
    })) as [DaemonProcess, DaemonProcess, DaemonProcess]
    // A's fragments are short and B's long, so A's job ends first although it gets a quarter of
    // the slots (A: 400 × ~0.1 s on 3 slots; B: 400 × 0.5 s on 9, then on all 12).
    const spec = (nap: string) => ({
      task: 'nap',
      range: { start: 0, end: 400 },
      fragmentSize: 1,
      env: { NAP: nap, PID_DIR: pidDir }
    })
    const [a, b] = await Promise.all([
      as(d1, 'teamA').submit(spec('0.05')),
      as(d2, 'teamB').submit(spec('0.5'))
    ])
    expect(a.fragments).toBe(400)
    const ops = as(d3, 'ops')
    let sumA = 0
    let sumB = 0
    let shared = 0
    const alone: number[] = []
    const started = performance.now()
    for (;;) {
      const [ja, jb] = await Promise.all([ops.job(a.id), ops.job(b.id)])
      if (jb.state === 'SUCCEEDED') break
      // Running as the mesh counts it: claimed and not yet recorded (a slot is taken from the
      // claim to the result, the task's start and end included, which for A's short fragments is
      // much of their time; its processes alone would undercount A).
      const ra = ja.statusSummary.RUNNING
      const rb = jb.statusSummary.RUNNING
      // Both have fragments waiting: the split is the scheduler's choice, not a lack of work.
      // (The first second is the start: daemons learn of both jobs at slightly different times.)
      if (
        ja.statusSummary.RUNNABLE > 12 &&
        jb.statusSummary.RUNNABLE > 12 &&
        performance.now() - started > 1000
      ) {
        sumA += ra
        sumB += rb
        shared++
      }
      if (ja.state === 'SUCCEEDED' && jb.statusSummary.RUNNABLE > 12) alone.push(rb)
      expect(performance.now() - started).toBeLessThan(170_000)
      await sleep(100)
    }
    if (process.env.SHOW_RATIO)
      console.log(
        `B:A ${sumB / sumA} over ${shared}; alone mean ${alone.reduce((x, y) => x + y, 0) / alone.length} max ${Math.max(...alone)}`
      )
    expect(shared).toBeGreaterThan(20)
    const ratio = sumB / sumA
    expect(ratio, `B:A = ${ratio.toFixed(2)} over ${shared} samples`).toBeGreaterThanOrEqual(2.7)
    expect(ratio, `B:A = ${ratio.toFixed(2)} over ${shared} samples`).toBeLessThanOrEqual(3.3)
    // A's job ended first; then B had every slot of the mesh (3 × 4), between two of its fragments
    // one or two fewer at a sampled moment.
    expect(alone.length).toBeGreaterThan(10)
    expect(Math.max(...alone)).toBe(12)
    expect(alone.reduce((x, y) => x + y, 0) / alone.length).toBeGreaterThanOrEqual(10)
    // The mesh-wide view per tenant is exported, and each tenant's token sees only its own series.
    const own = await (
      await fetch(`${d3.api}/metrics`, { headers: { authorization: `Bearer ${TOKENS.teamA}` } })
    ).text()
    expect(gauge(own, 'shoal_tenant_running_fragments', 'tenant', 'teamA')).toBe(0)
    expect(gauge(own, 'shoal_tenant_running_fragments', 'tenant', 'teamB')).toBeUndefined()
  }, 180_000)

  it('maxRunning 2 for A is never exceeded, also across a kill -9 and restart of a daemon; B is not held by it', async () => {
    const [d1, d2, d3] = (await setup({
      teamA: { maxRunning: 2 },
      ops: { admin: true }
    })) as [DaemonProcess, DaemonProcess, DaemonProcess]
    const spec = (n: number, nap: string) => ({
      task: 'nap',
      range: { start: 0, end: n },
      fragmentSize: 1,
      env: { NAP: nap, PID_DIR: pidDir }
    })
    // Two jobs of A (the limit is the tenant's, over its jobs), and one of B beside them.
    const a1 = await as(d1, 'teamA').submit(spec(40, '0.3'))
    const a2 = await as(d2, 'teamA').submit(spec(40, '0.3'))
    const b = await as(d3, 'teamB').submit(spec(60, '0.3'))
    const ops = as(d1, 'ops')
    let maxA = 0
    let maxB = 0
    let killed: DaemonProcess | undefined
    let restarted = false
    const started = performance.now()
    for (;;) {
      const run = runningByJob(pidDir)
      const ra = (run.get(a1.id) ?? 0) + (run.get(a2.id) ?? 0)
      maxA = Math.max(maxA, ra)
      maxB = Math.max(maxB, run.get(b.id) ?? 0)
      const [j1, j2] = await Promise.all([ops.job(a1.id), ops.job(a2.id)])
      if (j1.state === 'SUCCEEDED' && j2.state === 'SUCCEEDED') break
      const done = j1.statusSummary.SUCCEEDED + j2.statusSummary.SUCCEEDED
      // A third of the way: kill -9 a daemon (not the bootstrap) running one of A's fragments.
      if (killed === undefined && done >= 25) {
        const frags = [...(await ops.fragments(a1.id)), ...(await ops.fragments(a2.id))]
        const holder = frags.find((f) => f.state === 'RUNNING' && f.peer !== d1.peerId)?.peer
        killed = holder === d3.peerId ? d3 : d2
        killed.kill('SIGKILL')
        await killed.waitExit()
        setTimeout(() => {
          void (killed as DaemonProcess).start().then(() => {
            restarted = true
          })
        }, 1500)
      }
      expect(performance.now() - started).toBeLessThan(170_000)
      await sleep(50)
    }
    expect(killed).toBeDefined()
    await waitUntil('the restart', () => restarted)
    // The documented bound (decision 018): the limit holds while the daemons share one view of
    // the mesh; a kill and a restart change it twice, and nothing here exceeded it even then.
    expect(maxA).toBeLessThanOrEqual(2)
    expect(maxA).toBe(2)
    expect(maxB).toBeGreaterThan(2)
    for (const d of mesh) {
      const text = await (
        await fetch(`${d.api}/metrics`, { headers: { authorization: `Bearer ${TOKENS.ops}` } })
      ).text()
      expect(gauge(text, 'shoal_tenant_max_running_overshoot', 'tenant', 'teamA')).toBe(0)
    }
  }, 180_000)

  it('a task only one daemon runs: its fragments, a tenant’s maxRunning slots and a job’s maxConcurrency slots go to that daemon', async () => {
    // Slots dealt out over every daemon used to land with daemons that cannot run the task: the
    // tenant's (or the job's) fragments then waited for good (found by a red team).
    const names = Array.from({ length: 12 }, (_, i) => `t${i}`)
    const tokens: Record<string, string> = Object.fromEntries(
      names.map((n) => [n, `token-of-${n}-0123456789ab`])
    )
    tokens.ops = TOKENS.ops
    const tenants: Record<string, unknown> = Object.fromEntries(names.map((n) => [n, { maxRunning: 1 }]))
    tenants.ops = { admin: true }
    const base = { ...TEST_CONFIG, capacity: 4, apiTokens: tokens, tenants }
    const d1 = new DaemonProcess({
      name: 'd1',
      config: {
        ...base,
        tasks: { ...TEST_CONFIG.tasks, 'only-here': { command: ['sh', '-c', 'sleep 0.1; cat'] } }
      }
    })
    mesh = [d1]
    await d1.start()
    const others = ['d2', 'd3'].map((name) => new DaemonProcess({ name, config: base, bootstrap: [d1.addr] }))
    mesh.push(...others)
    await Promise.all(others.map((d) => d.start()))
    const ops = new ShoalClient(d1.api, { token: tokens.ops })
    await waitUntil(
      'the mesh',
      async () => (await ops.peers()).filter((p) => p.state === 'alive').length === 3
    )
    // A tenant, and a job id, whose one slot the whole mesh's ranking gives to another daemon.
    const all = mesh.map((d) => ({ id: d.peerId, capacity: 4 }))
    const elsewhere = (key: string) => slotOwners(key, 1, all)[0]?.id !== d1.peerId
    const victim = names.find((n) => elsewhere(`tenant:${n}`)) as string
    const spec = { task: 'only-here', range: { start: 0, end: 3 }, fragmentSize: 1 }
    const held = await new ShoalClient(d1.api, { token: tokens[victim] }).submit(spec)
    const capped: string[] = []
    for (let i = 0; i < 6; i++) capped.push((await ops.submit({ ...spec, maxConcurrency: 1 })).id)
    // (Each lands elsewhere with odds 2 in 3: the test needs one that does.)
    expect(victim).toBeDefined()
    expect(capped.some((id) => elsewhere(id))).toBe(true)
    for (const id of [held.id, ...capped])
      await waitUntil(`${id} to succeed`, async () => (await ops.job(id)).state === 'SUCCEEDED', 30_000)
    // Every fragment ran on the one daemon that has the task.
    for (const id of [held.id, ...capped])
      for (const f of await ops.fragments(id)) expect(f.peer).toBe(d1.peerId)
  }, 120_000)
})
