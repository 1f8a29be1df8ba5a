import { describe, expect, it } from 'vitest'
import type { Log } from '../../../src/core/ports.ts'
import type { JobRegister } from '../../../src/core/register.ts'
import { type ScheduleRegister, scheduleId } from '../../../src/core/schedule.ts'
import { idempotentJobId, type JobSpecInput } from '../../../src/core/spec.ts'
import { systemClock } from '../../../src/daemon/clock.ts'
import type { JobOrigin, JobService } from '../../../src/engine/jobs.ts'
import { ScheduleService } from '../../../src/engine/schedules.ts'
import type { Mesh } from '../../../src/mesh/mesh.ts'
import { MemoryStore } from '../../../src/store/memory.ts'
import { Replica } from '../../../src/store/replica.ts'

const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent } as unknown as Log

/** SKIP on one daemon; the register's floor is `floorAhead` ms past the daemon's clock. */
async function skipThenFinish(
  floorAhead: number
): Promise<{ made: number[]; handled: number[]; atFirstLook: number[] }> {
  const store = new MemoryStore()
  await store.open()
  const replica = new Replica(store, { clock: systemClock })
  const t0 = 1_800_000_000_000
  let now = t0 + 500
  const clock = { ...systemClock, wallNow: () => now, after: () => () => undefined }
  const made: number[] = []
  const jobRegs = new Map<string, JobRegister>()
  const jobs = {
    resolve: (t: JobSpecInput) => ({ fragmentSize: 1, ...t }),
    async submit(input: JobSpecInput, tenant: string, origin: JobOrigin) {
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
      jobRegs.set(id, job)
      await replica.applyDurably([{ kind: 'job', id, value: job }])
      made.push(origin.scheduledFor)
      return { id, existing: false }
    },
    async cancel() {}
  } as unknown as JobService
  const mesh = { peerId: 'p1', claimers: () => [{ id: 'p1' }], announce: () => undefined } as unknown as Mesh
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
      overlapPolicy: 'SKIP',
      startingDeadlineSeconds: 60
    },
    paused: false,
    deleted: false,
    createdAt: t0 - 10_000,
    updatedAt: t0 - 10_000,
    floor: t0 - 1 + floorAhead,
    handled: []
  }
  await replica.applyDurably([{ kind: 'sched', id: reg.id, value: reg }])
  const fireDue = (svc as unknown as { fireDue(): Promise<number> }).fireDue.bind(svc)
  await fireDue() // tick t0: a job, which runs on
  const atFirstLook = [...made]
  now = t0 + 1100
  await fireDue() // tick t0 + 1 s: skipped (SKIP), t0's job still runs
  now = t0 + 1600
  await fireDue()
  // t0's job ends (cancelled here: a terminal state)
  const first = [...jobRegs.values()][0] as JobRegister
  await replica.applyDurably([{ kind: 'job', id: first.id, value: { ...first, cancelled: true } }])
  now = t0 + 1700
  await fireDue()
  return { made, atFirstLook, handled: replica.state.schedules.get(reg.id)?.handled ?? [] }
}

describe('rt12b: a distrusted floor (a day ahead) and SKIP', () => {
  it('control: with a floor in the past, the skipped tick stays skipped', async () => {
    const { made } = await skipThenFinish(0)
    expect(made).toEqual([1_800_000_000_000])
    expect(made).not.toContain(1_800_000_001_000)
  })

  // Not fixed (rt12b finding): the merge drops handled ticks at or below the raw floor.
  it.fails('a skipped tick is not fired once the earlier job ends', async () => {
    const { made, handled, atFirstLook } = await skipThenFinish(86_400_000)
    expect(handled).toEqual([]) // the handled ticks the floor drops
    // Whatever the first look fired (the ranking window may hold a tick from before the floor),
    // every tick later looked at was skipped while that job ran: none may fire after it ends.
    expect(made).toEqual(atFirstLook)
  })
})
