/**
 * One daemon's schedule service alone, on an in-memory replica, with a clock the test sets and a
 * job service that records what it is asked: the harness of the schedule engine's unit tests.
 */
import type { Log } from '../../../src/core/ports.ts'
import type { JobRegister } from '../../../src/core/register.ts'
import { idempotentJobId, type JobSpecInput } from '../../../src/core/spec.ts'
import { systemClock } from '../../../src/daemon/clock.ts'
import type { JobOrigin, JobService } from '../../../src/engine/jobs.ts'
import { ScheduleService } from '../../../src/engine/schedules.ts'
import type { Mesh } from '../../../src/mesh/mesh.ts'
import { MemoryStore } from '../../../src/store/memory.ts'
import { Replica } from '../../../src/store/replica.ts'

export interface LoneDaemon {
  svc: ScheduleService
  replica: Replica
  jobs: JobService
  /** The ticks whose job was made (`scheduledFor`), in order. */
  made: number[]
  /** The jobs cancelled, each once. */
  cancelled: string[]
  /** The warnings logged. */
  warned: Array<{ fields: Record<string, unknown>; msg: string }>
  setNow(ms: number): void
  /** One look of the firing loop. */
  fireDue(): Promise<number>
}

/**
 * `submitDelayMs`: how long a submit takes before its job is in the state (a synced write).
 * The daemon is alone, so first in rank for every tick.
 */
export async function loneDaemon(start: number, submitDelayMs = 0): Promise<LoneDaemon> {
  const store = new MemoryStore()
  await store.open()
  const replica = new Replica(store, { clock: systemClock })
  let now = start
  const clock = { ...systemClock, wallNow: () => now, after: () => () => undefined }
  const made: number[] = []
  const cancelled: string[] = []
  const warned: LoneDaemon['warned'] = []
  const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent }
  const logger = {
    ...silent,
    warn: (fields: Record<string, unknown>, msg: string) => warned.push({ fields, msg }),
    child: () => logger
  } as unknown as Log
  const jobs = {
    resolve: (t: JobSpecInput) => ({ fragmentSize: 1, ...t }),
    withinItemQuota: () => undefined,
    async submit(input: JobSpecInput, tenant: string, origin: JobOrigin) {
      if (submitDelayMs > 0) await new Promise((r) => setTimeout(r, submitDelayMs))
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
      if (!cancelled.includes(id)) cancelled.push(id)
    }
  } as unknown as JobService
  const mesh = {
    peerId: 'p1',
    claimers: () => [{ id: 'p1' }],
    announce: () => undefined
  } as unknown as Mesh
  const svc = new ScheduleService({ scheduleStepMs: 1000 }, { replica, mesh, clock, logger, jobs })
  return {
    svc,
    replica,
    jobs,
    made,
    cancelled,
    warned,
    setNow: (ms) => {
      now = ms
    },
    fireDue: () => (svc as unknown as { fireDue(): Promise<number> }).fireDue()
  }
}
