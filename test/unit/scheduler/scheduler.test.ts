import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { newClaim } from '../../../src/core/claim.ts'
import type { BlobRef, TaskResult, TaskRun } from '../../../src/core/ports.ts'
import type { JobRegister } from '../../../src/core/register.ts'
import { resolveSpec, specHashOf } from '../../../src/core/spec.ts'
import type { Entry } from '../../../src/core/state.ts'
import { systemClock } from '../../../src/daemon/clock.ts'
import { retryDelay, Scheduler, type SchedulerMesh } from '../../../src/scheduler/scheduler.ts'
import { MemoryStore, Replica } from '../../../src/store/index.ts'

const SELF = 'peerSelf'
const OTHER = 'peerOther'

function job(
  n: number,
  timeoutSeconds = 10,
  extra: { maxConcurrency?: number; attempts?: number } = {}
): JobRegister {
  const spec = resolveSpec(
    { task: 'echo', range: { start: 0, end: n }, fragmentSize: 1, timeoutSeconds, ...extra },
    {}
  )
  return {
    id: 'j1',
    tenant: 'default',
    spec,
    specHash: specHashOf(spec),
    createdAt: 0,
    cancelled: false,
    acceptedBy: OTHER
  }
}

/** An executor whose runs end only when the test says so (or when aborted). */
class FakeExecutor {
  /** Fragments per slot by task name (TaskRunner.depth); absent: one. */
  depth?: (taskName: string) => number
  readonly runs: Array<{ req: TaskRun; finish: (r: Partial<TaskResult>) => void; aborted: boolean }> = []
  run(req: TaskRun): Promise<TaskResult> {
    return new Promise((resolve) => {
      const done = (r: Partial<TaskResult>) =>
        resolve({
          exitCode: 0,
          signal: null,
          stdout: req.lines.map((l) => `${l}\n`).join(''),
          stored: false,
          sha256: 'a'.repeat(64),
          bytes: 0,
          stderrTail: '',
          timedOut: false,
          outputTooLarge: false,
          aborted: false,
          durationMs: 1,
          ...r
        })
      const entry = { req, finish: done, aborted: false }
      req.signal?.addEventListener('abort', () => {
        entry.aborted = true
        done({ aborted: true, exitCode: null, signal: 'SIGKILL' })
      })
      this.runs.push(entry)
    })
  }
}

async function setup(
  opts: { peers?: string[]; otherAlive?: boolean; depth?: (taskName: string) => number } = {}
) {
  let now = 0
  const store = new MemoryStore()
  await store.open()
  const replica = new Replica(store, { clock: systemClock })
  const announced: Entry[] = []
  let otherAlive = opts.otherAlive ?? true
  const mesh: SchedulerMesh = {
    peerId: SELF,
    isSynced: true,
    suspectedBy: () => [],
    claimers: () => (opts.peers ?? [SELF]).map((id) => ({ id, capacity: 1 })),
    leaseLive: (holder) => holder === OTHER && otherAlive,
    superseded: () => false,
    suspectWindow: () => 1000,
    announce: (e) => announced.push(...e)
  }
  const executor = new FakeExecutor()
  if (opts.depth !== undefined) executor.depth = opts.depth
  const secured: Array<{ blob: BlobRef; done: () => void; fail: () => void }> = []
  /** Blobs the scheduler holds from collection now. */
  const held: string[] = []
  const scheduler = new Scheduler(
    {
      capacity: 2,
      stealDelayMs: 0,
      tickMs: 5,
      hostLostLimit: 1,
      killGraceMs: 100,
      retryBackoffMs: 1000,
      retryBackoffMaxMs: 8000,
      maxOutputBytes: 1024,
      inlineOutputBytes: 1024,
      maxProcesses: 64,
      taskPath: '/usr/bin:/bin',
      logger: pino({ level: 'silent' })
    },
    {
      replica,
      mesh,
      runner: executor,
      outputs: {
        hold: (blobs) => {
          held.push(...blobs.map((b) => b.sha256))
          return () => {
            for (const b of blobs) held.splice(held.indexOf(b.sha256), 1)
          }
        },
        secure: (blob) =>
          new Promise<boolean>((resolve) => {
            secured.push({ blob, done: () => resolve(true), fail: () => resolve(false) })
          })
      },
      tasks: (spec) =>
        spec.task === 'echo'
          ? { command: ['cat'] }
          : spec.task === 'warm'
            ? { module: '/warm.js' }
            : undefined,
      incarnation: 7,
      clock: { ...systemClock, now: () => now, wallNow: () => 1000 + now }
    }
  )
  return {
    replica,
    executor,
    scheduler,
    announced,
    secured,
    held,
    advance: (ms: number) => {
      now += ms
    },
    setOtherAlive: (v: boolean) => {
      otherAlive = v
    }
  }
}

const flush = () => new Promise((r) => setTimeout(r, 30))
let current: Awaited<ReturnType<typeof setup>> | undefined
afterEach(async () => {
  for (const r of current?.executor.runs ?? []) r.finish({})
  await current?.scheduler.stop(0)
})

describe('scheduler', () => {
  it('holds depth fragments per slot of a task whose warm pool queues them, by priority with cold ones', async () => {
    current = await setup({ depth: (name) => (name === 'warm' ? 4 : 1) })
    const { replica, executor, scheduler } = current
    const of = (id: string, task: string, n: number, priority: number): JobRegister => {
      const spec = resolveSpec({ task, range: { start: 0, end: n }, fragmentSize: 1, priority }, {})
      return { ...job(1), id, spec, specHash: specHashOf(spec) }
    }
    await replica.apply([{ kind: 'job', id: 'w', value: of('w', 'warm', 20, 0) }], 'remote')
    scheduler.start()
    await flush()
    // Capacity 2, four per slot: eight queued for the pool, not two.
    expect(executor.runs).toHaveLength(8)
    await replica.apply([{ kind: 'job', id: 'c', value: of('c', 'echo', 3, 5) }], 'remote')
    for (const r of executor.runs.slice(0, 4)) r.finish({})
    await flush()
    // One slot freed: the cold job ranks first and takes it whole; nothing else fits.
    const started = executor.runs.slice(8).map((r) => r.req.fragment?.job.id)
    expect(started).toEqual(['c'])
  })

  it('a run killed by a cancel is handed back, not left RUNNING to look lost when a retry lifts the cancel', async () => {
    current = await setup()
    const { replica, executor, scheduler } = current
    const j = job(1, 10, { attempts: 3 })
    await replica.apply([{ kind: 'job', id: 'j1', value: j }], 'remote')
    scheduler.start()
    await flush()
    expect(executor.runs).toHaveLength(1)
    await replica.apply([{ kind: 'job', id: 'j1', value: { ...j, cancelled: true } }], 'remote')
    await flush()
    expect(executor.runs[0]?.aborted).toBe(true)
    expect(replica.state.fragment('j1', '0')?.claim).toMatchObject({
      phase: 'RUNNABLE',
      attempt: 1,
      hostLost: 0
    })
    // The retry lifts the cancel: the fragment runs again as the same attempt, no host lost.
    await replica.apply([{ kind: 'job', id: 'j1', value: { ...j, cancelled: true, retries: 1 } }], 'remote')
    await flush()
    expect(executor.runs).toHaveLength(2)
    expect(replica.state.fragment('j1', '0')?.claim).toMatchObject({
      phase: 'RUNNING',
      attempt: 1,
      hostLost: 0
    })
    expect(replica.state.fragment('j1', '0')?.claim?.reason).toBeUndefined()
  })

  it('backs off before retrying a failed try, with jitter', async () => {
    current = await setup()
    const { replica, executor, scheduler, advance } = current
    await replica.apply([{ kind: 'job', id: 'j1', value: job(1, 10, { attempts: 3 }) }], 'remote')
    scheduler.start()
    await flush()
    executor.runs[0]?.finish({ exitCode: 1 })
    await flush()
    expect(replica.state.fragment('j1', '0')?.claim).toMatchObject({
      phase: 'RUNNABLE',
      attempt: 2,
      reason: 'EXIT_CODE'
    })
    const key = `frag/j1/${job(1, 10, { attempts: 3 }).specHash}/0`
    const delay = retryDelay(key, 2, 1000, 8000)
    expect(delay).toBeGreaterThanOrEqual(750)
    expect(delay).toBeLessThanOrEqual(1250)
    advance(delay - 1)
    await flush()
    expect(executor.runs).toHaveLength(1)
    advance(1)
    await flush()
    expect(executor.runs).toHaveLength(2)
    expect(executor.runs[1]?.req.env.SHOAL_ATTEMPT).toBe('2')
    expect(retryDelay(key, 5, 1000, 8000)).toBeLessThanOrEqual(8000 * 1.25)
  })

  it('a run this host cannot start (no work dir) is handed back, uses no attempt, and pauses claims', async () => {
    current = await setup()
    const { replica, executor, scheduler, advance } = current
    await replica.apply([{ kind: 'job', id: 'j1', value: job(2, 10, { attempts: 1 }) }], 'remote')
    scheduler.start()
    await flush()
    expect(executor.runs).toHaveLength(2)
    for (const r of executor.runs.splice(0))
      r.finish({ exitCode: null, spawnError: 'cannot create a work dir: ENOSPC', hostFault: true })
    await flush()
    // Not FAILED (attempts: 1 would fail it at once): back to RUNNABLE at the same attempt.
    for (const path of ['0', '1'])
      expect(replica.state.fragment('j1', path)?.claim).toMatchObject({ phase: 'RUNNABLE', attempt: 1 })
    expect(replica.state.fragment('j1', '0')?.claim?.reason).toBeUndefined()
    advance(4000)
    await flush()
    expect(executor.runs).toHaveLength(0)
    advance(1500)
    await flush()
    expect(executor.runs).toHaveLength(2)
  })

  it('never starts more fragments of a job than its maxConcurrency', async () => {
    current = await setup()
    const { replica, executor, scheduler } = current
    await replica.apply([{ kind: 'job', id: 'j1', value: job(5, 10, { maxConcurrency: 1 }) }], 'remote')
    scheduler.start()
    await flush()
    expect(executor.runs).toHaveLength(1) // capacity is 2
    executor.runs[0]?.finish({})
    await flush()
    expect(executor.runs).toHaveLength(2)
  })

  it('waits out runs of a capped job that it does not hold before starting its own', async () => {
    current = await setup({ otherAlive: true })
    const { replica, executor, scheduler } = current
    const j = job(4, 10, { maxConcurrency: 1 })
    await replica.apply(
      [
        { kind: 'job', id: 'j1', value: j },
        {
          kind: 'frag',
          job: 'j1',
          specHash: j.specHash,
          path: '3',
          value: newClaim(undefined, OTHER, 3, 1, 0, 0)
        }
      ],
      'remote'
    )
    scheduler.start()
    await flush()
    expect(executor.runs).toHaveLength(0)
    const done = replica.state.fragment('j1', '3')
    const claim = done?.claim as NonNullable<typeof done>['claim'] & object
    await replica.apply(
      [
        {
          kind: 'frag',
          job: 'j1',
          specHash: j.specHash,
          path: '3',
          value: { top: 1, claim: { ...claim, seq: 2, phase: 'SUCCEEDED' } }
        }
      ],
      'remote'
    )
    await flush()
    expect(executor.runs).toHaveLength(1)
  })

  it('claims into free slots, runs, and records one result per fragment', async () => {
    current = await setup()
    const { replica, executor, scheduler } = current
    await replica.apply([{ kind: 'job', id: 'j1', value: job(3) }], 'remote')
    scheduler.start()
    await flush()
    expect(executor.runs).toHaveLength(2) // capacity 2
    expect(executor.runs[0]?.req.env.SHOAL_FRAGMENT_PATH).toBe('0')
    executor.runs[0]?.finish({})
    executor.runs[1]?.finish({})
    await flush()
    expect(executor.runs).toHaveLength(3)
    executor.runs[2]?.finish({})
    await flush()
    const frags = replica.state.fragmentsOf('j1')
    expect([...frags.values()].map((r) => r.claim?.phase)).toEqual(['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED'])
  })

  it('records an output kept as a blob by reference, only once its copies are made', async () => {
    current = await setup()
    const { replica, executor, scheduler, secured, held } = current
    await replica.apply([{ kind: 'job', id: 'j1', value: job(1) }], 'remote')
    scheduler.start()
    await flush()
    expect(executor.runs[0]?.req.inlineOutputBytes).toBe(1024)
    const stderrBlob = { sha256: 'e'.repeat(64), bytes: 70_000 }
    executor.runs[0]?.finish({ stdout: '', stored: true, sha256: 'b'.repeat(64), bytes: 5000, stderrBlob })
    await flush()
    // Not recorded while the copies are being made; both blobs are held from collection.
    expect(secured.map((s) => s.blob)).toEqual([{ sha256: 'b'.repeat(64), bytes: 5000 }])
    expect(replica.state.fragment('j1', '0')?.claim?.phase).toBe('RUNNING')
    expect(held.sort()).toEqual(['b'.repeat(64), 'e'.repeat(64)])
    secured[0]?.done()
    await flush()
    // Recorded (the register now references both): held no more.
    expect(held).toEqual([])
    expect(replica.state.fragment('j1', '0')?.claim?.tries?.[0]?.logBlob).toEqual(stderrBlob)
    const claim = replica.state.fragment('j1', '0')?.claim
    expect(claim?.phase).toBe('SUCCEEDED')
    expect(claim?.outcome).toMatchObject({ blob: true, sha256: 'b'.repeat(64), bytes: 5000 })
    expect(claim?.outcome?.output).toBeUndefined()
  })

  it('hands a fragment back, not succeeded, when no other daemon took a copy of its output', async () => {
    current = await setup()
    const { replica, executor, scheduler, secured } = current
    await replica.apply([{ kind: 'job', id: 'j1', value: job(1) }], 'remote')
    scheduler.start()
    await flush()
    executor.runs[0]?.finish({ stdout: '', stored: true, sha256: 'b'.repeat(64), bytes: 5000 })
    await flush()
    secured[0]?.fail()
    await flush()
    const claim = replica.state.fragment('j1', '0')?.claim
    expect(claim?.phase).toBe('RUNNABLE')
    expect(claim?.attempt).toBe(1)
    expect(claim?.outcome).toBeUndefined()
    // Not claimed again at once (a hot loop of runs whose output nobody takes), but after a pause.
    scheduler.wake()
    await flush()
    expect(executor.runs).toHaveLength(1)
    current.advance(5001)
    scheduler.wake()
    await flush()
    expect(executor.runs).toHaveLength(2)
  })

  it('keeps no output of a failed try, inline or blob', async () => {
    current = await setup()
    const { replica, executor, scheduler, secured } = current
    await replica.apply(
      [{ kind: 'job', id: 'j1', value: { ...job(1), spec: { ...job(1).spec, attempts: 1 } } }],
      'remote'
    )
    scheduler.start()
    await flush()
    executor.runs[0]?.finish({ exitCode: 3, stored: true, sha256: 'c'.repeat(64), bytes: 9000 })
    await flush()
    const claim = replica.state.fragment('j1', '0')?.claim
    expect(claim?.phase).toBe('FAILED')
    expect(claim?.outcome?.blob).toBeUndefined()
    expect(claim?.outcome?.output).toBeUndefined()
    expect(secured).toHaveLength(0)
  })

  it('kills a run at once when a newer claim beats its own, and records nothing', async () => {
    current = await setup()
    const { replica, executor, scheduler } = current
    const j = job(1)
    await replica.apply([{ kind: 'job', id: 'j1', value: j }], 'remote')
    scheduler.start()
    await flush()
    const mine = replica.state.fragment('j1', '0')
    const theirs = newClaim(mine, OTHER, 3, 1, 1, 5)
    await replica.apply(
      [{ kind: 'frag', job: 'j1', specHash: j.specHash, path: '0', value: theirs }],
      'remote'
    )
    await flush()
    expect(executor.runs[0]?.aborted).toBe(true)
    expect(replica.state.fragment('j1', '0')?.claim).toMatchObject({
      holder: OTHER,
      phase: 'RUNNING',
      epoch: 2
    })
  })

  it('re-claims a dead holder’s fragment as HOST_LOST, and fails it past hostLostLimit', async () => {
    current = await setup({ otherAlive: false })
    const { replica, executor, scheduler, advance } = current
    const j = job(2)
    const lost = newClaim(undefined, OTHER, 3, 1, 0, 0)
    const lostTwice = newClaim(undefined, OTHER, 3, 1, 1, 0)
    await replica.apply(
      [
        { kind: 'job', id: 'j1', value: j },
        { kind: 'frag', job: 'j1', specHash: j.specHash, path: '0', value: lost },
        { kind: 'frag', job: 'j1', specHash: j.specHash, path: '1', value: lostTwice }
      ],
      'remote'
    )
    scheduler.start()
    await flush()
    // Claims just learned of get 2 × suspectMs before their dead holder loses them.
    expect(executor.runs).toHaveLength(0)
    advance(2000)
    await flush()
    expect(replica.state.fragment('j1', '0')?.claim).toMatchObject({
      holder: SELF,
      epoch: 2,
      hostLost: 1,
      reason: 'HOST_LOST',
      attempt: 1
    })
    expect(executor.runs).toHaveLength(1)
    expect(replica.state.fragment('j1', '1')?.claim).toMatchObject({ phase: 'FAILED', reason: 'HOST_LOST' })
  })

  it('lapses a claim RUNNING past lifespan + grace + 2 × suspectMs although its holder looks alive', async () => {
    current = await setup({ otherAlive: true })
    const { replica, executor, scheduler, advance } = current
    const j = job(1, 1)
    await replica.apply(
      [
        { kind: 'job', id: 'j1', value: j },
        {
          kind: 'frag',
          job: 'j1',
          specHash: j.specHash,
          path: '0',
          value: newClaim(undefined, OTHER, 3, 1, 0, 0)
        }
      ],
      'remote'
    )
    scheduler.start()
    await flush()
    expect(executor.runs).toHaveLength(0)
    advance(1000 + 100 + 2000 - 1)
    await flush()
    expect(executor.runs).toHaveLength(0)
    advance(2)
    await flush()
    expect(executor.runs).toHaveLength(1)
    expect(replica.state.fragment('j1', '0')?.claim).toMatchObject({ holder: SELF, epoch: 2, hostLost: 1 })
  })
})
