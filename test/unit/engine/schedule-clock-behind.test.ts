import { describe, expect, it } from 'vitest'
import type { Log } from '../../../src/core/ports.ts'
import type { JobSpecInput } from '../../../src/core/spec.ts'
import { systemClock } from '../../../src/daemon/clock.ts'
import type { JobOrigin, JobService } from '../../../src/engine/jobs.ts'
import { ScheduleService } from '../../../src/engine/schedules.ts'
import type { Mesh } from '../../../src/mesh/mesh.ts'
import { MemoryStore } from '../../../src/store/memory.ts'
import { Replica } from '../../../src/store/replica.ts'

const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent } as unknown as Log

/**
 * Decision 016: "A daemon whose own clock is more than a minute behind distrusts a right floor
 * the same way: it may fire one tick from before a change." Here a daemon 2 minutes behind the
 * daemon that created a schedule (cron every second) fires every tick of its own clock for a
 * minute: 60 jobs of ticks from before the schedule existed.
 */
describe('a daemon whose clock is 2 minutes behind', () => {
  // Found while floors past a daemon's clock were ignored (62 ticks from before creation fired);
  // the floor is obeyed again.
  it('fires at most one tick from before the schedule was created', async () => {
    const store = new MemoryStore()
    await store.open()
    const replica = new Replica(store, { clock: systemClock })
    const created = 1_800_000_000_000
    let now = created // the creating daemon's clock (right)
    const clock = { ...systemClock, wallNow: () => now, after: () => () => undefined }
    const made: number[] = []
    const jobs = {
      resolve: (t: JobSpecInput) => ({ fragmentSize: 1, ...t }),
      withinItemQuota: () => undefined,
      async submit(_input: JobSpecInput, _tenant: string, origin: JobOrigin) {
        made.push(origin.scheduledFor)
        return { id: 'j', existing: false }
      },
      async cancel() {}
    } as unknown as JobService
    const mesh = {
      peerId: 'p1',
      claimers: () => [{ id: 'p1' }],
      announce: () => undefined
    } as unknown as Mesh
    const svc = new ScheduleService({ scheduleStepMs: 1000 }, { replica, mesh, clock, logger: silent, jobs })
    await svc.upsert({
      name: 's',
      cron: '* * * * * *',
      template: { task: 'echo', items: ['x'] },
      overlapPolicy: 'ALLOW'
    })
    // The same replica stands for the behind daemon's (the register reached it): its clock reads 2 min less.
    const fireDue = (svc as unknown as { fireDue(): Promise<number> }).fireDue.bind(svc)
    for (let real = created; real <= created + 90_000; real += 1000) {
      now = real - 120_000
      await fireDue()
    }
    const before = [...new Set(made.filter((t) => t <= created))]
    expect(before.length).toBeLessThanOrEqual(1)
  })
})
