import { describe, expect, it } from 'vitest'
import type { Log } from '../../../src/core/ports.ts'
import type { JobRegister } from '../../../src/core/register.ts'
import {
  type OverlapPolicy,
  type ScheduleRegister,
  scheduleId,
  tickJobKey
} from '../../../src/core/schedule.ts'
import { idempotentJobId, type JobSpecInput } from '../../../src/core/spec.ts'
import { systemClock } from '../../../src/daemon/clock.ts'
import type { JobOrigin, JobService } from '../../../src/engine/jobs.ts'
import { ScheduleService } from '../../../src/engine/schedules.ts'
import type { Mesh } from '../../../src/mesh/mesh.ts'
import { MemoryStore } from '../../../src/store/memory.ts'
import { Replica } from '../../../src/store/replica.ts'

const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent } as unknown as Log

/** One daemon alone (first in rank for every tick), two ticks of a schedule due in the same look. */
async function twoDueTicks(
  policy: OverlapPolicy,
  laterFiredElsewhere = false
): Promise<{ made: number[]; cancelled: string[] }> {
  const store = new MemoryStore()
  await store.open()
  const replica = new Replica(store, { clock: systemClock })
  const t0 = 1_800_000_000_000
  let now = t0 + 1500
  const clock = { ...systemClock, wallNow: () => now, after: () => () => undefined }
  const made: number[] = []
  const cancelled: string[] = []
  const jobs = {
    resolve: (t: JobSpecInput) => ({ fragmentSize: 1, ...t }),
    async submit(input: JobSpecInput, tenant: string, origin: JobOrigin) {
      // A synced write takes a moment: the job is not in the state at once.
      await new Promise((r) => setTimeout(r, 20))
      const id = idempotentJobId(tenant, input.idempotencyKey as string)
      const job = {
        id,
        tenant,
        spec: { task: 'echo', items: ['x'], itemCount: 1, fragmentCount: 1, fragmentSize: 1 },
        specHash: 'h'.repeat(64),
        createdAt: now,
        cancelled: false,
        acceptedBy: 'p1',
        schedule: origin.schedule,
        scheduledFor: origin.scheduledFor
      } as unknown as JobRegister
      await replica.applyDurably([{ kind: 'job', id, value: job }])
      made.push(origin.scheduledFor)
      return { id, existing: false }
    },
    async cancel(id: string) {
      // Cancelled once, whoever asks (the firing or the sweep for superseded jobs).
      if (!cancelled.includes(id)) cancelled.push(id)
    }
  } as unknown as JobService
  const mesh = {
    peerId: 'p1',
    claimers: () => [{ id: 'p1' }],
    announce: () => undefined
  } as unknown as Mesh
  const svc = new ScheduleService({ scheduleStepMs: 1000 }, { replica, mesh, clock, logger: silent, jobs })
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
  await replica.applyDurably([{ kind: 'sched', id: reg.id, value: reg }])
  if (laterFiredElsewhere) {
    // Another daemon fired the later tick first; its job runs and has reached this daemon.
    const input = { idempotencyKey: tickJobKey('o', t0 + 1000) } as JobSpecInput
    await jobs.submit(input, 'default', { schedule: 'o', scheduledFor: t0 + 1000 })
    made.length = 0
    // ... and that later job has already ended (here: cancelled, a terminal state).
    const id = idempotentJobId('default', tickJobKey('o', t0 + 1000))
    const j = replica.state.jobs.get(id) as JobRegister
    await replica.applyDurably([{ kind: 'job', id, value: { ...j, cancelled: true } }])
  }
  // Ticks t0 and t0 + 1 s are both owed now (the daemon could not fire t0 in time).
  await (svc as unknown as { fireDue(): Promise<number> }).fireDue()
  now += 10
  return { made, cancelled }
}

describe("CANCEL_PREVIOUS, a tick fired late after a later tick's job ended", () => {
  it('is not started only to be cancelled by the sweep a moment later', async () => {
    const { made, cancelled } = await twoDueTicks('CANCEL_PREVIOUS', true)
    expect(made.length - cancelled.length).toBe(made.length)
  })
})
