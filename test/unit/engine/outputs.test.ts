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

async function keeperWith(entries: Entry[], live: string[]): Promise<OutputKeeper> {
  const store = new MemoryStore()
  await store.open()
  const replica = new Replica(store, { clock: systemClock })
  await replica.apply(entries, 'remote')
  const mesh = {
    isSynced: true,
    peers: () => live.map((peerId, i) => ({ peerId, state: 'alive', self: i === 0, leaving: false }))
  } as unknown as Mesh
  return new OutputKeeper(
    { replicas: 2, checkMs: 1000, graceMs: 0, idleMs: 1000, logger: silent },
    {
      peerId: live[0] as string,
      blobs: new MemoryBlobStore(),
      transport: {} as Transport,
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
})
