import { readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, sleep, startMesh, stopAll } from '../../scripts/lib/local-mesh.ts'
import { ShoalClient } from '../../src/cli/client.ts'
import { apiError, TEST_CONFIG } from './helpers.ts'

const TOKENS = { teamA: 'token-of-team-a-0123456789' }
const CONFIG = {
  ...TEST_CONFIG,
  apiTokens: TOKENS,
  tenants: { teamA: { maxItemsPerJob: 2, maxActiveJobs: 1 } },
  tasks: { ...TEST_CONFIG.tasks, nap3: { command: ['sh', '-c', 'sleep 3; cat'] } }
}

describe('a schedule and its tenant’s quota (a red-team finding)', () => {
  let mesh: DaemonProcess[] = []
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
  })

  it('a template past the tenant’s maxItemsPerJob is refused when the schedule is created, not at every tick', async () => {
    mesh = await startMesh({ count: 1, config: CONFIG })
    const teamA = new ShoalClient((mesh[0] as DaemonProcess).api, { token: TOKENS.teamA })
    const template = { task: 'echo', items: ['a', 'b', 'c'] }
    const err = await apiError(teamA.putSchedule({ name: 'big', cron: '* * * * * *', template }))
    expect([err.status, err.message]).toEqual([429, expect.stringMatching(/template\.items: 3 items/)])
    expect(await teamA.schedules()).toEqual([]) // nothing stored
    // Within the quota: accepted, and it fires.
    await teamA.putSchedule({
      name: 'small',
      cron: '* * * * * *',
      template: { ...template, items: ['a', 'b'] }
    })
    await sleep(2500)
    expect((await teamA.jobs(undefined, { schedule: 'small' })).length).toBeGreaterThan(0)
  })

  it('a tick the tenant’s maxActiveJobs holds back is tried again until its deadline, warned of once, not at every look', async () => {
    const log = join(tmpdir(), `shoal-quota-ticks-${process.pid}.log`)
    try {
      mesh = await startMesh({ count: 1, config: CONFIG, logTo: () => log })
      const teamA = new ShoalClient((mesh[0] as DaemonProcess).api, { token: TOKENS.teamA })
      // Jobs of 3 s, a tick a second, one active job allowed: most ticks wait for the quota.
      await teamA.putSchedule({
        name: 'q',
        cron: '* * * * * *',
        template: { task: 'nap3', items: ['x'] },
        overlapPolicy: 'ALLOW',
        startingDeadlineSeconds: 30
      })
      await sleep(8000)
      await teamA.pauseSchedule('q')
      const jobs = await teamA.jobs(undefined, { schedule: 'q' })
      expect(jobs.length).toBeGreaterThan(0)
      expect(jobs.length).toBeLessThanOrEqual(4) // one at a time, 3 s each
      const warned = readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => l.includes('cannot fire a schedule tick here'))
        .map((l) => JSON.parse(l) as { level: number; tick: string; err: string })
        .filter((l) => l.level === 40)
      expect(warned.length).toBeGreaterThan(0)
      expect(warned[0]?.err).toMatch(/QUOTA_EXCEEDED|maxActiveJobs/)
      const ticks = warned.map((w) => w.tick)
      expect(ticks).toEqual([...new Set(ticks)]) // each tick warned of once
    } finally {
      rmSync(log, { force: true })
    }
  })
})
