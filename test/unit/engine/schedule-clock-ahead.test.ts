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
 * Red-team finding: a schedule created (or resumed, or its cron changed) through a daemon whose
 * clock runs ahead gets that daemon's "now" as its floor; the floor merges by max, and deleting
 * and re-creating the schedule keeps it, so no daemon fired a tick until the real time passed
 * it. Now a floor further ahead than MAX_CLOCK_AHEAD_MS is not trusted (trustedFloor).
 */
describe('a schedule created through a daemon whose clock runs a day ahead', () => {
  it('fires again once re-created through a daemon with the right time', async () => {
    const store = new MemoryStore()
    await store.open()
    const replica = new Replica(store, { clock: systemClock })
    const t0 = 1_800_000_000_000
    let now = t0
    const clock = { ...systemClock, wallNow: () => now, after: () => () => undefined }
    const made: number[] = []
    const jobs = {
      resolve: (t: JobSpecInput) => ({ fragmentSize: 1, ...t }),
      withinItemQuota: () => undefined,
      async submit(_input: JobSpecInput, _tenant: string, origin: JobOrigin) {
        made.push(origin.scheduledFor)
        return { id: 'j', existing: false }
      }
    } as unknown as JobService
    const mesh = {
      peerId: 'p1',
      claimers: () => [{ id: 'p1' }],
      announce: () => undefined
    } as unknown as Mesh
    const svc = new ScheduleService({ scheduleStepMs: 1000 }, { replica, mesh, clock, logger: silent, jobs })
    const input = { name: 's', cron: '* * * * * *', template: { task: 'echo', items: ['x'] } }
    now = t0 + 86_400_000 // the daemon that takes the create runs a day ahead
    await svc.upsert(input)
    now = t0 // the right time, on the daemon that fires, and on the one the operator uses next
    await svc.remove('s')
    await svc.upsert(input)
    now = t0 + 5000
    await (svc as unknown as { fireDue(): Promise<number> }).fireDue()
    expect(made).toContain(t0 + 5000)
  })
})
