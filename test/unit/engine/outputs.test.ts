import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { Log } from '../../../src/core/ports.ts'
import type { Claim, JobRegister } from '../../../src/core/register.ts'
import { resolveSpec, specHashOf } from '../../../src/core/spec.ts'
import type { Entry } from '../../../src/core/state.ts'
import { systemClock } from '../../../src/daemon/clock.ts'
import { OutputKeeper } from '../../../src/engine/outputs.ts'
import type { Mesh } from '../../../src/mesh/mesh.ts'
import type { Transport } from '../../../src/mesh/transport.ts'
import { MemoryBlobStore, MemoryStore, Replica } from '../../../src/store/index.ts'

const silent: Log = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silent
}

function jobOf(id: string): JobRegister {
  const spec = resolveSpec({ task: 'echo', items: ['x', 'y'], fragmentSize: 1 }, {})
  return {
    id,
    tenant: 'default',
    spec,
    specHash: specHashOf(spec),
    createdAt: 0,
    cancelled: false,
    acceptedBy: 'p1'
  }
}

const SHA = createHash('sha256').update('same bytes').digest('hex')

function succeeded(holder: string): Claim {
  return {
    epoch: 1,
    holder,
    incarnation: 1,
    seq: 2,
    attempt: 1,
    phase: 'SUCCEEDED',
    hostLost: 0,
    outcome: { exitCode: 0, bytes: 10, sha256: SHA, blob: true }
  }
}

async function keeperWith(
  entries: Entry[],
  live: string[],
  transport = {} as Transport,
  graceMs = 0,
  dead: string[] = [],
  pulls: Partial<Pick<Mesh, 'pullJobs' | 'pullAll'>> = {}
): Promise<OutputKeeper> {
  const store = new MemoryStore()
  await store.open()
  const replica = new Replica(store, { clock: systemClock })
  await replica.apply(entries, 'remote')
  const mesh = {
    isSynced: true,
    peers: () => [
      ...live.map((peerId, i) => ({ peerId, state: 'alive', self: i === 0, leaving: false })),
      ...dead.map((peerId) => ({ peerId, state: 'dead', self: false, leaving: false }))
    ],
    // Peers answer pulls, with nothing this daemon lacks.
    pullJobs: async () => 0,
    pullAll: async () => 0,
    ...pulls
  } as unknown as Mesh
  return new OutputKeeper(
    { replicas: 2, checkMs: 1000, graceMs, idleMs: 1000, logger: silent },
    {
      peerId: live[0] as string,
      blobs: new MemoryBlobStore(),
      transport,
      replica,
      mesh,
      clock: systemClock,
      serving: () => true
    }
  )
}

describe('the output keeper', () => {
  it('agrees on the holders of a blob two runners made, whatever order the registers arrived in', async () => {
    // The same bytes, output by two fragments run on different daemons (p4 and p2). Every
    // daemon must pick the same runner, or they disagree on who holds the blob and none fetches.
    const [j1, j2] = [jobOf('j1'), jobOf('j2')]
    const entries: Entry[] = [
      { kind: 'job', id: 'j1', value: j1 },
      {
        kind: 'frag',
        job: 'j1',
        specHash: j1.specHash,
        path: '0',
        value: { top: 1, claim: succeeded('p4') }
      },
      { kind: 'job', id: 'j2', value: j2 },
      { kind: 'frag', job: 'j2', specHash: j2.specHash, path: '0', value: { top: 1, claim: succeeded('p2') } }
    ]
    const live = ['p1', 'p2', 'p3', 'p4', 'p5']
    const one = await keeperWith(entries, live)
    const other = await keeperWith([entries[2], entries[3], entries[0], entries[1]] as Entry[], live)
    const a = one.referenced().get(SHA)
    const b = other.referenced().get(SHA)
    expect(a?.runner).toBe('p2')
    expect(b?.runner).toBe('p2')
    expect(one.holders(SHA, a?.runner)).toEqual(other.holders(SHA, b?.runner))
    expect(one.holders(SHA, 'p2')[0]).toBe('p2')
    expect(one.holders(SHA, 'p2')).toHaveLength(2)
  })

  it('ranks others for a blob whose runner is gone, and collects a blob nothing references', async () => {
    const k = await keeperWith([], ['p1', 'p3'])
    expect(k.holders(SHA, 'p9').sort()).toEqual(['p1', 'p3'])
    const blobs = (k as unknown as { c: { blobs: MemoryBlobStore } }).c.blobs
    const ref = await blobs.put(
      (async function* () {
        yield Buffer.from('orphan')
      })()
    )
    await k.check() // first seen unreferenced
    expect(blobs.holds(ref.sha256)).toBe(true)
    await k.check() // past the grace (0)
    expect(blobs.holds(ref.sha256)).toBe(false)
    expect(k.collected).toBe(1)
  })

  it('secures an output alone only in a mesh of one, not while the other daemons are away', async () => {
    // A runner that sees no live peer for a moment must not record a success whose only copy
    // is on its disk: the simulator lost such an output when that runner was then lost for good.
    const blob = { sha256: SHA, bytes: 10 }
    expect(await (await keeperWith([], ['p1'])).secure(blob)).toBe(true)
    expect(await (await keeperWith([], ['p1'], {} as Transport, 0, ['p2', 'p3'])).secure(blob)).toBe(false)
  })

  it('does not collect a blob whose success was recorded while a long check was repairing others', async () => {
    // X: bytes an older job left, unreferenced and past its grace. A check starts, then stalls
    // fetching a blob it should hold (Y, a slow peer). Meanwhile a new fragment here outputs the
    // same bytes X and its success is recorded. The check resumed with its old snapshot of the
    // references and deleted X, which a recorded success now names.
    const X = 'same output bytes'
    const shaX = createHash('sha256').update(X).digest('hex')
    const jy = jobOf('jy')
    const yClaim = {
      ...succeeded('p2'),
      outcome: { exitCode: 0, bytes: 1, sha256: 'f'.repeat(64), blob: true as const }
    }
    let release: () => void = () => undefined
    const transport = {
      async *fetchBlob() {
        await new Promise<void>((r) => {
          release = r
        })
        throw new Error('stalled')
      },
      async sendBlob() {}
    } as unknown as Transport
    const k = await keeperWith(
      [
        { kind: 'job', id: 'jy', value: jy },
        { kind: 'frag', job: 'jy', specHash: jy.specHash, path: '0', value: { top: 1, claim: yClaim } }
      ],
      ['p1', 'p2'],
      transport,
      20
    )
    const c = k as unknown as { c: { blobs: MemoryBlobStore; replica: Replica } }
    await c.c.blobs.put(
      (async function* () {
        yield Buffer.from(X)
      })()
    )
    const first = k.check() // sees X unreferenced, stalls on Y
    await new Promise((r) => setTimeout(r, 20))
    release()
    await first
    await new Promise((r) => setTimeout(r, 30)) // X is past its grace now
    const checking = k.check() // stalls on Y again
    await new Promise((r) => setTimeout(r, 10))
    const done = k.hold([{ sha256: shaX, bytes: X.length }])
    expect(await k.secure({ sha256: shaX, bytes: X.length })).toBe(true)
    const jx = jobOf('jx')
    const xClaim = {
      ...succeeded('p1'),
      outcome: { exitCode: 0, bytes: X.length, sha256: shaX, blob: true as const }
    }
    await c.c.replica.apply(
      [
        { kind: 'job', id: 'jx', value: jx },
        { kind: 'frag', job: 'jx', specHash: jx.specHash, path: '0', value: { top: 1, claim: xClaim } }
      ],
      'local'
    )
    done()
    release()
    await checking
    expect(c.c.blobs.holds(shaX)).toBe(true)
  })

  it('keeps a copy secured for a job until the live daemons were asked for its registers', async () => {
    // p3 ran a fragment of j1 and copied its output here (p1) before recording SUCCEEDED; the
    // register reached p2 but not p1, and p3 was then lost for good. Past the grace p1 deleted
    // the copy as unreferenced: the output of a recorded success was on no daemon left.
    const j1 = jobOf('j1')
    const registers: Entry[] = [
      { kind: 'job', id: 'j1', value: j1 },
      { kind: 'frag', job: 'j1', specHash: j1.specHash, path: '0', value: { top: 1, claim: succeeded('p3') } }
    ]
    let answer: 'none' | 'p2-only' | 'nothing' | 'register' = 'none'
    const asked: string[][] = []
    let replica: Replica | undefined
    const k = await keeperWith([], ['p1', 'p2', 'p4'], {} as Transport, 0, ['p3'], {
      pullJobs: async (peer: string, jobs: string[]) => {
        asked.push(jobs)
        if (answer === 'none' || (answer === 'p2-only' && peer !== 'p2')) throw new Error(`${peer} timed out`)
        if (answer === 'register' && peer === 'p2') await replica?.apply(registers, 'remote')
        return 0
      }
    })
    const c = k as unknown as { c: { blobs: MemoryBlobStore; replica: Replica } }
    replica = c.c.replica
    const bytes = async function* () {
      yield Buffer.from('same bytes')
    }
    await k.receive({ sha256: SHA, bytes: 10 }, bytes(), 'j1')
    // No peer answers, then only one of two: the register may be on the other. Kept.
    for (const a of ['none', 'none', 'p2-only'] as const) {
      answer = a
      await k.check()
      expect(c.c.blobs.holds(SHA)).toBe(true)
    }
    expect(asked.at(-1)).toEqual(['j1'])
    // p2 holds the register: the pull brings it here, and the copy is referenced (and kept).
    answer = 'register'
    await k.check()
    expect(c.c.blobs.holds(SHA)).toBe(true)
    expect(k.referenced().has(SHA)).toBe(true)

    // Another copy for a job whose success nobody recorded (its runner handed it back): deleted
    // once every live daemon answered with nothing that references it.
    const other = createHash('sha256').update('other bytes').digest('hex')
    await k.receive(
      { sha256: other, bytes: 11 },
      (async function* () {
        yield Buffer.from('other bytes')
      })(),
      'j2'
    )
    answer = 'none'
    await k.check()
    await k.check()
    expect(c.c.blobs.holds(other)).toBe(true)
    answer = 'nothing'
    await k.check()
    expect(c.c.blobs.holds(other)).toBe(false)
    expect(c.c.blobs.holds(SHA)).toBe(true)
  })

  it('collects a blob kept from an earlier life only once every live daemon was pulled', async () => {
    // A copy received before a restart lost its job id with that life's memory.
    let answers = false
    const k = await keeperWith([], ['p1', 'p2'], {} as Transport, 0, [], {
      pullAll: async () => {
        if (!answers) throw new Error('timed out')
        return 0
      }
    })
    const blobs = (k as unknown as { c: { blobs: MemoryBlobStore } }).c.blobs
    const ref = await blobs.put(
      (async function* () {
        yield Buffer.from('kept from before')
      })()
    )
    await k.check()
    await k.check()
    expect(blobs.holds(ref.sha256)).toBe(true)
    answers = true
    await k.check()
    expect(blobs.holds(ref.sha256)).toBe(false)
  })
})
