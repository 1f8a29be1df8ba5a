import { generateKeyPair } from '@libp2p/crypto/keys'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import fc from 'fast-check'
import { createLibp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, FAST, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { TOPIC_HEARTBEAT, TOPIC_STATE } from '../../src/mesh/libp2p.ts'
import { health, lines, output, reader, submit, waitMeshReady, waitState } from './helpers.ts'

/** Fuzz cases per property; raise it for long runs: SHOAL_FUZZ_RUNS=5000 npm run fuzz */
const RUNS = Number(process.env.SHOAL_FUZZ_RUNS ?? 120)

describe('hostile input', () => {
  let mesh: DaemonProcess[] = []
  beforeAll(async () => {
    mesh = await startMesh({ count: 2, config: { ...FAST, rateLimitPerMinute: 0 } })
    await waitMeshReady(mesh.map((d) => d.api))
  })
  afterAll(async () => {
    await stopAll(mesh)
  })

  const valid = {
    task: 'echo',
    items: ['a', 'b'],
    fragmentSize: 1,
    attempts: 2,
    priority: 1,
    env: { A: 'b' }
  }
  const paths = [
    '/v1/jobs',
    '/v1/jobs/x',
    '/v1/jobs/x/fragments',
    '/v1/jobs/x/output',
    '/v1/jobs/x/cancel',
    '/v1/peers',
    '/metrics'
  ]

  it('random and mutated HTTP requests never get a 5xx, and errors keep the error shape', async () => {
    const [a] = mesh as [DaemonProcess]
    const body = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
      fc
        .tuple(
          fc.constantFrom(...Object.keys(valid), 'command', 'range', 'extra'),
          fc.jsonValue({ maxDepth: 2 })
        )
        .map(([k, v]) => JSON.stringify({ ...valid, [k]: v })),
      fc.string({ maxLength: 200 }),
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1'))
    )
    const contentType = fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'text/plain',
      'application/x-www-form-urlencoded',
      ''
    )
    const path = fc.oneof(
      fc.constantFrom(...paths),
      fc.string({ maxLength: 40 }).map((s) => `/v1/jobs/${encodeURIComponent(s)}`),
      fc.string({ maxLength: 40 }).map((s) => `/v1/jobs?state=${encodeURIComponent(s)}`)
    )
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'),
        path,
        body,
        contentType,
        fc.string({ maxLength: 40 }),
        async (method, p, b, ct, auth) => {
          const headers: Record<string, string> = {}
          if (ct !== '') headers['content-type'] = ct
          if (auth !== '') headers.authorization = auth.replace(/[^\x20-\x7e]/g, '')
          const res = await fetch(`${a.api}${p}`, {
            method,
            headers,
            ...(method === 'GET' ? {} : { body: b })
          })
          expect(res.status).toBeLessThan(500)
          if (res.status >= 400) {
            const e = (await res.json()) as { error: { code: string; message: string } }
            expect(typeof e.error.code).toBe('string')
            expect(typeof e.error.message).toBe('string')
          } else await res.arrayBuffer()
        }
      ),
      { numRuns: RUNS }
    )
    expect((await health(a.api)).status).toBe('ok')
  })

  it('a peer flooding malformed gossip does not stop honest work, and changes no state', async () => {
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    const rogue = await createLibp2p({
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
    })
    try {
      rogue.services.pubsub.subscribe(TOPIC_STATE)
      rogue.services.pubsub.subscribe(TOPIC_HEARTBEAT)
      await rogue.dial(multiaddr(a.addr))
      await waitUntil(
        'rogue to see subscribers',
        () => rogue.services.pubsub.getSubscribers(TOPIC_STATE).length > 0
      )
      const junk = fc.sample(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.jsonValue({ maxDepth: 3 }).map((v) => new TextEncoder().encode(JSON.stringify(v))),
          fc.constant(
            new TextEncoder().encode(
              JSON.stringify({ t: 'delta', from: 'x', entries: [{ kind: 'job', id: 'j', value: {} }] })
            )
          ),
          fc.constant(new TextEncoder().encode(JSON.stringify({ t: 'hb', peer: { peerId: 'evil' } })))
        ),
        400
      )
      const flood = (async () => {
        for (const [i, msg] of junk.entries()) {
          await rogue.services.pubsub
            .publish(i % 2 === 0 ? TOPIC_STATE : TOPIC_HEARTBEAT, msg)
            .catch(() => undefined)
        }
      })()
      const items = Array.from({ length: 40 }, (_, i) => `h${i}`)
      const j = await submit(b.api, { task: 'echo', items, fragmentSize: 2 })
      await flood
      await waitState(a.api, j.id, 'SUCCEEDED', 30_000)
      expect((await output(a.api, j.id)).text).toBe(lines(items))
      // Nothing from the flood entered the state: only the honest job changed it.
      const jobs = await reader(a.api).jobs()
      expect(jobs.some((x) => x.id === 'j')).toBe(false)
      const rejected = Number(
        /shoal_gossip_rejected_total (\d+)/.exec(await (await fetch(`${a.api}/metrics`)).text())?.[1]
      )
      expect(rejected).toBeGreaterThan(0)
      const peers = await reader(a.api).peers()
      expect(peers.map((p) => p.peerId)).not.toContain('evil')

      // Well-formed heartbeats: one naming another daemon (an impostor, which could otherwise
      // invent members and stretch everyone's heartbeat period) is rejected; the rogue speaking
      // for itself is heard, so the check is on the signer, not on the sender being unknown.
      const impostor = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
      const record = (peerId: string, seq: number) => ({
        t: 'hb',
        peer: {
          peerId,
          name: 'rogue',
          incarnation: 1,
          seq,
          multiaddrs: [],
          api: '',
          capacity: 1,
          running: 0,
          synced: false,
          claiming: false,
          leaving: false,
          suspects: [],
          every: 250
        }
      })
      const before = Number(
        /shoal_gossip_rejected_total (\d+)/.exec(await (await fetch(`${a.api}/metrics`)).text())?.[1]
      )
      for (let seq = 1; seq <= 5; seq++) {
        for (const id of [impostor, rogue.peerId.toString()])
          await rogue.services.pubsub
            .publish(TOPIC_HEARTBEAT, new TextEncoder().encode(JSON.stringify(record(id, seq))))
            .catch(() => undefined)
      }
      await waitUntil('the rogue to be heard as itself', async () =>
        (await reader(a.api).peers()).some((p) => p.peerId === rogue.peerId.toString())
      )
      const after = await reader(a.api).peers()
      expect(after.map((p) => p.peerId)).not.toContain(impostor)
      const rejectedAfter = Number(
        /shoal_gossip_rejected_total (\d+)/.exec(await (await fetch(`${a.api}/metrics`)).text())?.[1]
      )
      expect(rejectedAfter).toBeGreaterThan(before)
    } finally {
      await rogue.stop()
    }
  })
})
