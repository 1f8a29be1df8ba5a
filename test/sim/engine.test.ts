import { describe, expect, it } from 'vitest'
import type { SubmitAnswer } from '../../src/core/api.ts'
import { ENGINE_DEFAULTS } from '../../src/core/config.ts'
import { Membership } from '../../src/core/membership.ts'
import { tickJobKey } from '../../src/core/schedule.ts'
import { JobService } from '../../src/engine/jobs.ts'
import { ShoalNode } from '../../src/engine/node.ts'
import { Mesh } from '../../src/mesh/mesh.ts'
import { Scheduler } from '../../src/scheduler/scheduler.ts'
import { VirtualClock } from '../../src/sim/clock.ts'
import { SimHost, type World } from '../../src/sim/host.ts'
import { Random } from '../../src/sim/random.ts'
import { Replica } from '../../src/store/replica.ts'

/** One simulated host alone, its runs lasting `runMs` (virtual). */
function lone(runMs = 10): { clock: VirtualClock; host: SimHost; errors: string[] } {
  const clock = new VirtualClock()
  const errors: string[] = []
  const world: World = {
    clock,
    peerIds: ['d0'],
    wallBase: 1_750_000_000_000,
    send: () => undefined,
    reachable: () => false,
    planRun: () => ({ durationMs: runMs, exitCode: 0, timedOut: false }),
    fenceTouch: () => undefined,
    fenceCommit: () => true,
    newJobId: () => 'j1',
    onChange: () => undefined,
    onRunStart: () => undefined,
    onRunEnd: () => undefined,
    onTransition: () => undefined,
    onError: (_host, what) => errors.push(what),
    onStartRefused: () => undefined,
    trace: () => undefined,
    tracing: false
  }
  const host = new SimHost(world, {
    id: 'd0',
    config: {
      ...ENGINE_DEFAULTS,
      name: 'd0',
      tasks: { sim: { command: ['sim'] } },
      allowAdHocCommands: false
    },
    fsyncEveryMs: 100,
    depth: 1,
    monoOffset: 0,
    wallSkew: 0,
    killMs: 20,
    pullTimeoutMs: 5000,
    rng: new Random(1),
    seams: {}
  })
  return { clock, host, errors }
}

/**
 * One engine (docs/decisions/011): a simulated host runs the classes the daemon runs, not a
 * model of them. (The layer rules add that src/sim reaches them only through ShoalNode.)
 */
describe('a simulated host', () => {
  it('runs the shipped ShoalNode: its replica, mesh, membership, scheduler and job service', async () => {
    const { host, errors } = lone()
    host.start()
    await new Promise((resolve) => setImmediate(resolve))
    const node = host.node as ShoalNode
    expect(node).toBeInstanceOf(ShoalNode)
    expect(node.replica).toBeInstanceOf(Replica)
    expect(node.mesh).toBeInstanceOf(Mesh)
    expect(node.mesh.membership).toBeInstanceOf(Membership)
    expect(node.scheduler).toBeInstanceOf(Scheduler)
    expect(node.jobs).toBeInstanceOf(JobService)
    expect(node.state).toBe('alive')
    // Time is virtual: the engine's incarnation comes from the host's wall clock, in ms.
    expect(node.incarnation).toBe(1_750_000_000_000)
    expect(errors).toEqual([])
  })

  it('CANCEL_PREVIOUS: a job a later tick superseded is cancelled once both are known, wherever the later one was fired', async () => {
    const { clock, host, errors } = lone(60_000)
    host.start()
    const node = host.node as ShoalNode
    const settle = () => new Promise<void>((resolve) => setImmediate(resolve))
    const until = async (what: () => boolean, ms: number) => {
      await clock.runAsync(clock.now + ms, what, settle)
      return what()
    }
    expect(await until(() => node.state === 'alive' && node.replica.writable, 10_000)).toBe(true)
    // A yearly schedule: no tick of its own comes due in this test.
    await node.schedules.upsert({
      name: 'nightly',
      cron: '0 0 1 1 *',
      template: { task: 'sim', items: ['x'] },
      overlapPolicy: 'CANCEL_PREVIOUS'
    })
    const template = (await node.schedules.get('nightly')).template
    // Two ticks' jobs, each made as another daemon would have fired it, not knowing the other.
    const tick = Date.UTC(2025, 0, 1)
    const made = []
    for (const t of [tick, tick + 86_400_000])
      made.push(
        await node.jobs.submit({ ...template, idempotencyKey: tickJobKey('nightly', t) }, 'default', {
          schedule: 'nightly',
          scheduledFor: t
        })
      )
    const [older, newer] = made as [SubmitAnswer, SubmitAnswer]
    const state = (id: string) => node.jobs.listJobs().find((j) => j.id === id)?.state
    expect(await until(() => state(older.id) === 'CANCELLED', 5_000)).toBe(true)
    expect(state(newer.id)).not.toBe('CANCELLED')
    expect(errors).toEqual([])
  })
})
