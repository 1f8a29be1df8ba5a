import { readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, sleep, startMesh, stopAll } from '../../scripts/lib/local-mesh.ts'
import { ShoalClient } from '../../src/cli/client.ts'
import { TEST_CONFIG } from './helpers.ts'

/**
 * Red-team reproduction, NOT fixed: a schedule whose tenant is at its maxActiveJobs. Each tick
 * it cannot fire is tried again on every look (about a second) by every daemon whose turn has
 * come, each try a warning, until the tick leaves its window or deadline; the tick is never
 * recorded (no skip shows), and when a job ends the oldest owed tick fires, seconds late.
 * Measured: 3 daemons, a tick a second, jobs of 4 s, 15 s: 3 jobs, 104 warning lines.
 */
const TOKENS = { teamA: 'token-of-team-a-0123456789' }
const CONFIG = {
  ...TEST_CONFIG,
  apiTokens: TOKENS,
  tenants: { teamA: { maxActiveJobs: 1 } },
  tasks: { ...TEST_CONFIG.tasks, nap4: { command: ['sh', '-c', 'sleep 4; cat'] } }
}

describe('a schedule whose tenant is at its maxActiveJobs (a red-team reproduction)', () => {
  let mesh: DaemonProcess[] = []
  const logs: string[] = []
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
    for (const f of logs.splice(0)) rmSync(f, { force: true })
  })

  it('counts the warnings and how late the ticks that fire are', async () => {
    const log = (n: string) => join(tmpdir(), `shoal-quota-busy-${process.pid}-${n}.log`)
    logs.push(...['d1', 'd2', 'd3'].map(log))
    mesh = await startMesh({ count: 3, config: CONFIG, logTo: log })
    const teamA = new ShoalClient((mesh[0] as DaemonProcess).api, { token: TOKENS.teamA })
    await sleep(3000)
    await teamA.putSchedule({
      name: 'q',
      cron: '* * * * * *',
      template: { task: 'nap4', items: ['x'] },
      overlapPolicy: 'ALLOW',
      startingDeadlineSeconds: 30
    })
    await sleep(15_000)
    await teamA.pauseSchedule('q')
    const jobs = await teamA.jobs(undefined, { schedule: 'q' })
    const lateMs = jobs.map((j) => Date.parse(j.createdAt) - Date.parse(j.scheduledFor as string))
    const warnings = mesh.map(
      (d) =>
        readFileSync(log(d.name), 'utf8')
          .split('\n')
          .filter((l) => l.includes('cannot fire a schedule tick')).length
    )
    console.log({ jobs: jobs.length, lateMs, warnings })
    expect(jobs.length).toBeGreaterThan(0)
  }, 120_000)
})
