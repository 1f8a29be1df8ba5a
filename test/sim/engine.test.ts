import { describe, expect, it } from 'vitest'
import { ENGINE_DEFAULTS } from '../../src/core/config.ts'
import { Membership } from '../../src/core/membership.ts'
import { JobService } from '../../src/engine/jobs.ts'
import { ShoalNode } from '../../src/engine/node.ts'
import { Mesh } from '../../src/mesh/mesh.ts'
import { Scheduler } from '../../src/scheduler/scheduler.ts'
import { VirtualClock } from '../../src/sim/clock.ts'
import { SimHost, type World } from '../../src/sim/host.ts'
import { Random } from '../../src/sim/random.ts'
import { Replica } from '../../src/store/replica.ts'

/**
 * One engine (docs/decisions/011): a simulated host runs the classes the daemon runs, not a
 * model of them. (The layer rules add that src/sim reaches them only through ShoalNode.)
 */
describe('a simulated host', () => {
  it('runs the shipped ShoalNode: its replica, mesh, membership, scheduler and job service', async () => {
    const clock = new VirtualClock()
    const errors: string[] = []
    const world: World = {
      clock,
      peerIds: ['d0'],
      wallBase: 1_750_000_000_000,
      send: () => undefined,
      reachable: () => false,
      planRun: () => ({ durationMs: 10, exitCode: 0, timedOut: false }),
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
})
