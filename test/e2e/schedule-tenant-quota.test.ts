import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, sleep, startMesh, stopAll } from '../../scripts/lib/local-mesh.ts'
import { ShoalClient } from '../../src/cli/client.ts'
import { apiError, TEST_CONFIG } from './helpers.ts'

const TOKENS = { teamA: 'token-of-team-a-0123456789' }
const CONFIG = { ...TEST_CONFIG, apiTokens: TOKENS, tenants: { teamA: { maxItemsPerJob: 2 } } }

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
})
