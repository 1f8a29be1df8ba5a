import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  type DaemonProcess,
  ROOT,
  sleep,
  startMesh,
  stopAll,
  waitUntil
} from '../../scripts/lib/local-mesh.ts'
import type { JobSummary } from '../../src/core/api.ts'
import { rankPeers } from '../../src/core/hrw.ts'
import { scheduleId, tickRankKey } from '../../src/core/schedule.ts'
import { apiError, client, shoal, TEST_CONFIG, waitMeshReady } from './helpers.ts'

/** A schedule's jobs as one daemon lists them, by tick (ms). */
async function ticks(api: string, name: string): Promise<Map<number, JobSummary>> {
  const jobs = await client(api).jobs(undefined, { schedule: name })
  const byTick = new Map<number, JobSummary>()
  for (const j of jobs) {
    const t = Date.parse(j.scheduledFor as string)
    // One job per tick: a second job for a tick would be a second id, which the id rule forbids.
    expect(byTick.has(t), `two jobs for tick ${j.scheduledFor}`).toBe(false)
    byTick.set(t, j)
  }
  return byTick
}

describe('schedules: cron without a singleton', () => {
  let mesh: DaemonProcess[] = []
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
  })

  it('three daemons, a tick every second: exactly one job per tick, also when the daemon ranked first is killed half-way', async () => {
    mesh = await startMesh({ count: 3, config: TEST_CONFIG })
    const a = mesh[0] as DaemonProcess
    await waitMeshReady(mesh.map((d) => d.api))
    const created = await client(a.api).putSchedule({
      name: 'every-second',
      cron: '* * * * * *',
      template: { task: 'echo', items: ['tick'] },
      // Every tick makes its job, even while an earlier one still runs (a killed daemon's).
      overlapPolicy: 'ALLOW'
    })
    expect(created.nextTick).not.toBeNull()
    await sleep(5000)
    // The daemon ranked first for the coming tick dies (kill -9) just before it.
    const id = scheduleId('default', 'every-second')
    const next = Math.ceil((Date.now() + 300) / 1000) * 1000
    const peers = mesh.map((d) => ({ id: d.peerId, capacity: 1 }))
    const firstId = (rankPeers(tickRankKey(id, next), peers)[0] as { id: string }).id
    const victim = mesh.find((d) => d.peerId === firstId) as DaemonProcess
    const survivors = mesh.filter((d) => d !== victim)
    await sleep(Math.max(0, next - 300 - Date.now()))
    victim.kill('SIGKILL')
    const killedAt = Date.now()
    await sleep(6000)
    await client((survivors[0] as DaemonProcess).api).pauseSchedule('every-second')
    const pausedAt = Date.now()

    // Every survivor lists the same jobs: one for each tick from the first to the last, none
    // missing (the tick after the kill included), none twice, no conflicting specs.
    let seen = new Map<number, JobSummary>()
    await waitUntil(
      'the survivors to list the same jobs',
      async () => {
        const views = await Promise.all(survivors.map((d) => ticks(d.api, 'every-second')))
        seen = views[0] as Map<number, JobSummary>
        return (
          views.every((v) => [...v.keys()].sort().join() === [...seen.keys()].sort().join()) && seen.size > 0
        )
      },
      15_000
    )
    const times = [...seen.keys()].sort((x, y) => x - y)
    const first = times[0] as number
    const last = times.at(-1) as number
    expect(times).toEqual(Array.from({ length: (last - first) / 1000 + 1 }, (_, i) => first + i * 1000))
    expect(times.length).toBeGreaterThanOrEqual(10)
    expect(first).toBeLessThan(killedAt)
    expect(last).toBeGreaterThan(killedAt + 3000)
    expect(seen.has(next)).toBe(true)
    for (const j of seen.values()) expect(j.conflicts).toBeUndefined()
    // The tick the victim was first for went to another daemon, after its step.
    const after = seen.get(next) as JobSummary
    expect(after.acceptedBy).not.toBe(victim.peerId)
    // No singleton: ticks before the kill were fired by more than one daemon.
    const firers = new Set(
      [...seen.values()]
        .filter((j) => Date.parse(j.scheduledFor as string) < killedAt)
        .map((j) => j.acceptedBy)
    )
    expect(firers.size).toBeGreaterThan(1)
    // Paused: no tick after the pause (allow the one being fired at that moment).
    await sleep(2500)
    const later = await ticks((survivors[1] as DaemonProcess).api, 'every-second')
    expect([...later.keys()].filter((t) => t > pausedAt + 1000)).toEqual([])
  })

  it('ticks missed while every daemon was down: one job within the deadline, none past it', async () => {
    mesh = await startMesh({ count: 2, config: TEST_CONFIG })
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    await waitMeshReady(mesh.map((d) => d.api))
    // Three ticks, 10, 11 and 12 s from now (once a minute), while both daemons are down.
    const base = Math.ceil(Date.now() / 1000) * 1000
    const tickAt = [10_000, 11_000, 12_000].map((d) => base + d)
    const seconds = tickAt.map((t) => new Date(t).getUTCSeconds()).join(',')
    const template = { task: 'echo', items: ['late'] }
    await client(a.api).putSchedule({
      name: 'within',
      cron: `${seconds} * * * * *`,
      template,
      startingDeadlineSeconds: 40
    })
    await client(a.api).putSchedule({
      name: 'past',
      cron: `${seconds} * * * * *`,
      template,
      startingDeadlineSeconds: 1
    })
    await waitUntil(
      'b to know both schedules',
      async () => (await client(b.api).schedules()).length === 2,
      10_000
    )
    for (const d of mesh) expect(await d.stop()).toBe(0)
    // Down through all three ticks; back up 4 s after the last one, so that the first two are
    // older than the ranking window (2 daemons × 1 s step + 1 s) when first seen: missed.
    await sleep(Math.max(0, (tickAt[2] as number) + 4000 - Date.now()))
    await a.start()
    b.options.bootstrap = [a.addr]
    await b.start()
    await waitMeshReady(mesh.map((d) => d.api))
    await sleep(4000)
    for (const d of mesh) {
      const within = await ticks(d.api, 'within')
      expect([...within.keys()]).toEqual([tickAt[2]])
      expect(await ticks(d.api, 'past')).toEqual(new Map())
    }
  })

  it('bad schedules are refused naming the field; list, show, pause, resume and delete from any daemon and the CLI', async () => {
    mesh = await startMesh({ count: 2, config: TEST_CONFIG })
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    await waitMeshReady(mesh.map((d) => d.api))
    const ok = {
      name: 'nightly',
      cron: '30 2 * * *',
      timezone: 'Europe/Berlin',
      template: { task: 'echo', items: ['x'] }
    }
    const bad: Array<[Record<string, unknown>, number, RegExp]> = [
      [{ cron: '61 * * * *' }, 400, /INVALID_SPEC: cron: /],
      [{ cron: 'every day' }, 400, /INVALID_SPEC: cron: /],
      [{ timezone: 'Mars/Olympus' }, 400, /INVALID_SPEC: timezone: /],
      [{ overlapPolicy: 'SOMETIMES' }, 400, /overlapPolicy/],
      [{ template: { task: 'echo' } }, 400, /template\.items\/range: /],
      [{ template: { task: 'echo', items: ['x'], attempts: 0 } }, 400, /template\.attempts/],
      [{ template: { task: 'echo', items: ['x'], idempotencyKey: 'k' } }, 400, /template\.idempotencyKey: /],
      [{ template: { task: 'no-such-task', items: ['x'] } }, 403, /TASK_NOT_ALLOWED: template\.task: /],
      [{ name: 'a b' }, 400, /name/]
    ]
    for (const [over, status, msg] of bad) {
      const err = await apiError(client(a.api).putSchedule({ ...ok, ...over } as never))
      expect([err.status, err.message], JSON.stringify(over)).toEqual([status, expect.stringMatching(msg)])
    }
    expect(await client(a.api).schedules()).toEqual([]) // nothing stored

    const made = await client(a.api).putSchedule(ok)
    expect(made).toMatchObject({
      name: 'nightly',
      timezone: 'Europe/Berlin',
      overlapPolicy: 'SKIP',
      startingDeadlineSeconds: 60,
      paused: false
    })
    // 02:30 Berlin is 00:30 or 01:30 UTC, by the season.
    expect(made.nextTick).toMatch(/T0[01]:30:00\.000Z$/)
    const seenOnB = await waitUntil(
      'b to know the schedule',
      async () => (await client(b.api).schedules())[0],
      10_000
    )
    expect(seenOnB.name).toBe('nightly')

    const env = { SHOAL_API: b.api }
    expect((await shoal(['schedule', 'pause', 'nightly'], env)).stdout).toMatch(/"paused": true/)
    expect((await client(a.api).schedule('nightly')).nextTick).toBeNull()
    await waitUntil(
      'a to see the pause',
      async () => (await client(a.api).schedule('nightly')).paused,
      10_000
    )
    expect((await shoal(['schedule', 'resume', 'nightly'], env)).stdout).toMatch(/"paused": false/)
    const list = await shoal(['schedule', 'list'], env)
    expect(list.stdout).toMatch(/nightly\s+default\s+30 2 \* \* \*\s+Europe\/Berlin\s+echo\s+SKIP\s+no/)
    expect((await shoal(['schedule', 'show', 'nightly', '--tenant', 'default'], env)).stdout).toMatch(
      /"paused": false/
    )
    expect((await shoal(['schedule', 'delete', 'nightly'], env)).code).toBe(0)
    await waitUntil('a to see the delete', async () => (await client(a.api).schedules()).length === 0, 10_000)
    expect((await apiError(client(a.api).schedule('nightly'))).status).toBe(404)
    const missing = await shoal(['schedule', 'show', 'nightly'], env)
    expect([missing.code, missing.stderr.trim().split('\n').length]).toEqual([expect.any(Number), 1])
    expect(missing.stderr).toMatch(/SCHEDULE_NOT_FOUND/)
  })

  it('overlap policies: SKIP never runs two jobs at once, CANCEL_PREVIOUS cancels the earlier job, ALLOW overlaps', async () => {
    mesh = await startMesh({ count: 1, config: TEST_CONFIG })
    const a = mesh[0] as DaemonProcess
    await waitMeshReady([a.api])
    // Each job runs 2.5 s, and a tick comes every second.
    const template = {
      task: 'slow-on',
      items: ['x'],
      env: { SLOW_PEER: 'everyone', SLOW_SECONDS: '2.5' }
    }
    const policies = ['SKIP', 'CANCEL_PREVIOUS', 'ALLOW'] as const
    for (const p of policies)
      await client(a.api).putSchedule({
        name: p.toLowerCase(),
        cron: '* * * * * *',
        template,
        overlapPolicy: p
      })
    await sleep(6500)
    for (const p of policies) await client(a.api).pauseSchedule(p.toLowerCase())
    const ended = (j: JobSummary) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(j.state)
    const byPolicy = new Map<string, JobSummary[]>()
    await waitUntil(
      'every job of the three schedules to end',
      async () => {
        for (const p of policies)
          byPolicy.set(
            p,
            [...(await ticks(a.api, p.toLowerCase())).entries()].sort(([x], [y]) => x - y).map(([, j]) => j)
          )
        return [...byPolicy.values()].every((js) => js.every(ended))
      },
      30_000,
      250
    )
    const at = (t: string | null) => Date.parse(t as string)
    const consecutive = (js: JobSummary[]) =>
      js.every(
        (j, i) => i === 0 || at(j.scheduledFor as string) - at(js[i - 1]?.scheduledFor as string) === 1000
      )

    // SKIP: a tick with an earlier job still running makes no job, so jobs never overlap.
    const skip = byPolicy.get('SKIP') as JobSummary[]
    expect(skip.length).toBeGreaterThanOrEqual(2)
    expect(skip.length).toBeLessThan(5) // 2.5 s jobs fit at most 3 times in 6.5 s
    expect(skip.map((j) => j.state)).toEqual(skip.map(() => 'SUCCEEDED'))
    for (let i = 1; i < skip.length; i++)
      expect(at((skip[i] as JobSummary).createdAt)).toBeGreaterThanOrEqual(
        at((skip[i - 1] as JobSummary).finishedAt)
      )

    // CANCEL_PREVIOUS: every tick makes its job and cancels the one before, still running.
    const cancel = byPolicy.get('CANCEL_PREVIOUS') as JobSummary[]
    expect(cancel.length).toBeGreaterThanOrEqual(5)
    expect(consecutive(cancel)).toBe(true)
    expect(cancel.slice(0, -1).map((j) => j.state)).toEqual(cancel.slice(0, -1).map(() => 'CANCELLED'))
    expect(cancel.at(-1)?.state).toBe('SUCCEEDED') // the last, fired before the pause, runs to its end

    // ALLOW: every tick makes its job, and they run side by side.
    const allow = byPolicy.get('ALLOW') as JobSummary[]
    expect(allow.length).toBeGreaterThanOrEqual(5)
    expect(consecutive(allow)).toBe(true)
    expect(allow.map((j) => j.state)).toEqual(allow.map(() => 'SUCCEEDED'))
    expect(at((allow[1] as JobSummary).createdAt)).toBeLessThan(at((allow[0] as JobSummary).finishedAt))
  })

  it('a tick passed while paused or before a cron change never fires, also when the schedule is sent again', async () => {
    mesh = await startMesh({ count: 1, config: TEST_CONFIG })
    const a = mesh[0] as DaemonProcess
    await waitMeshReady([a.api])
    const template = { task: 'echo', items: ['x'] }
    // Paused, then sent again without "paused" (which resumes it) after ticks passed.
    await client(a.api).putSchedule({ name: 'p', cron: '* * * * * *', template, paused: true })
    // A yearly one, changed to a cron whose tick came 2 s before the change.
    await client(a.api).putSchedule({ name: 'c', cron: '0 0 1 1 *', template, startingDeadlineSeconds: 3600 })
    const soon = new Date(Date.now() + 1500)
    await sleep(3500)
    const changedAt = Date.now()
    await client(a.api).putSchedule({ name: 'p', cron: '* * * * * *', template })
    await client(a.api).putSchedule({
      name: 'c',
      cron: `${soon.getUTCSeconds()} ${soon.getUTCMinutes()} * * * *`,
      template,
      startingDeadlineSeconds: 3600
    })
    await sleep(2500)
    const p = [...(await ticks(a.api, 'p')).keys()]
    expect(p.length).toBeGreaterThan(0) // running again
    expect(p.filter((t) => t < changedAt)).toEqual([])
    expect(await ticks(a.api, 'c')).toEqual(new Map())
    // A plain job may not take a tick's idempotency key.
    const taken = await apiError(
      client(a.api).submit({
        task: 'echo',
        items: ['x'],
        idempotencyKey: 'schedule:p:2030-01-01T00:00:00.000Z'
      })
    )
    expect([taken.status, taken.message]).toEqual([400, expect.stringMatching(/idempotencyKey: /)])
  })

  it('a tick due soon warms the warm pool ahead of it (the forecast reads the schedules)', async () => {
    const config = {
      ...TEST_CONFIG,
      tasks: {
        ...TEST_CONFIG.tasks,
        double: { module: join(ROOT, 'test', 'fixtures', 'module-task.mjs'), minWarm: 0, maxWarm: 3 }
      }
    }
    mesh = await startMesh({ count: 1, config })
    const a = mesh[0] as DaemonProcess
    await waitMeshReady([a.api])
    const gauge = async (name: string): Promise<number> => {
      const m = new RegExp(`^${name}\\{[^}]*task="double"[^}]*\\} (\\S+)$`, 'm').exec(
        await (await fetch(`${a.api}/metrics`)).text()
      )
      return Number(m?.[1] ?? 0)
    }
    // The module was loaded once at start (one thread); let that thread retire first.
    await waitUntil(
      'the pool to shrink to its minimum',
      async () => (await gauge('shoal_pool_workers')) === 0,
      30_000,
      250
    )
    const tick = Math.ceil((Date.now() + 9000) / 1000) * 1000
    const d = new Date(tick)
    await client(a.api).putSchedule({
      name: 'warm-ahead',
      cron: `${d.getUTCSeconds()} ${d.getUTCMinutes()} ${d.getUTCHours()} * * *`,
      template: { task: 'double', range: { start: 0, end: 3 }, fragmentSize: 1 }
    })
    const warmAt = await waitUntil(
      'three warm threads',
      async () => ((await gauge('shoal_pool_workers')) >= 3 ? Date.now() : 0),
      20_000,
      100
    )
    expect(warmAt).toBeLessThan(tick) // ready before the tick, not after the fragments came
    expect(await gauge('shoal_pool_scheduled_fragments')).toBe(3)
    const jobs = await waitUntil(
      'the tick’s job',
      async () => (await client(a.api).jobs(undefined, { schedule: 'warm-ahead' }))[0],
      20_000
    )
    await waitUntil(
      'the job to succeed',
      async () => (await client(a.api).job(jobs.id)).state === 'SUCCEEDED',
      20_000
    )
  })
})
