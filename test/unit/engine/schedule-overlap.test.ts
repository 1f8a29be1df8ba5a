import { describe, expect, it } from 'vitest'
import type { JobRegister } from '../../../src/core/register.ts'
import {
  type OverlapPolicy,
  type ScheduleRegister,
  scheduleId,
  tickJobKey
} from '../../../src/core/schedule.ts'
import { idempotentJobId, type JobSpecInput } from '../../../src/core/spec.ts'
import { loneDaemon } from './schedule-harness.ts'

/**
 * One daemon alone (first in rank for every tick), two ticks of a schedule due in the same look.
 * `later`: the later tick was fired first by another daemon, and its job reached this one,
 * still running or already ended.
 */
async function twoDueTicks(
  policy: OverlapPolicy,
  later?: 'running' | 'ended'
): Promise<{ made: number[]; cancelled: string[] }> {
  const t0 = 1_800_000_000_000
  // A synced write takes a moment: a job is not in the state at once.
  const d = await loneDaemon(t0 + 1500, 20)
  const reg: ScheduleRegister = {
    id: scheduleId('default', 'o'),
    tenant: 'default',
    name: 'o',
    version: 1,
    spec: {
      cron: '* * * * * *',
      timezone: 'UTC',
      template: { task: 'echo', items: ['x'], fragmentSize: 1 },
      overlapPolicy: policy,
      startingDeadlineSeconds: 60
    },
    paused: false,
    deleted: false,
    createdAt: t0 - 10_000,
    updatedAt: t0 - 10_000,
    floor: t0 - 10_000,
    handled: []
  }
  await d.replica.applyDurably([{ kind: 'sched', id: reg.id, value: reg }])
  if (later !== undefined) {
    const key = tickJobKey('o', t0 + 1000)
    await d.jobs.submit({ idempotencyKey: key } as JobSpecInput, 'default', {
      schedule: 'o',
      scheduledFor: t0 + 1000
    })
    d.made.length = 0
    if (later === 'ended') {
      // Here: cancelled, a terminal state.
      const id = idempotentJobId('default', key)
      const j = d.replica.state.jobs.get(id) as JobRegister
      await d.replica.applyDurably([{ kind: 'job', id, value: { ...j, cancelled: true } }])
    }
  }
  // Ticks t0 and t0 + 1 s are both owed now (the daemon could not fire t0 in time).
  await d.fireDue()
  return { made: d.made, cancelled: d.cancelled }
}

describe('schedules: overlap policies when two ticks are due at once', () => {
  it('SKIP: one job, not both ticks running side by side', async () => {
    const { made } = await twoDueTicks('SKIP')
    expect(made).toHaveLength(1)
  })

  it('CANCEL_PREVIOUS: the later tick cancels the earlier one, or the earlier is not started beside it', async () => {
    const { made, cancelled } = await twoDueTicks('CANCEL_PREVIOUS')
    expect(made.length - cancelled.length).toBe(1)
  })

  it.each(['SKIP', 'CANCEL_PREVIOUS'] as const)(
    '%s: a tick fired late while a later tick’s job already runs is skipped',
    async (policy) => {
      const { made } = await twoDueTicks(policy, 'running')
      expect(made).toEqual([])
    }
  )

  it('ALLOW: both ticks make their job', async () => {
    const { made } = await twoDueTicks('ALLOW')
    expect(made).toHaveLength(2)
  })

  it('CANCEL_PREVIOUS: a tick fired late after a later tick’s job ended is not started only to be cancelled by the sweep', async () => {
    const { made, cancelled } = await twoDueTicks('CANCEL_PREVIOUS', 'ended')
    expect([made, cancelled]).toEqual([[], []])
  })
})
