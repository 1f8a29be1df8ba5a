import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DaemonProcess, ROOT, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { client, shoal, TEST_CONFIG } from './helpers.ts'

const VERSION = (JSON.parse(readFileSync(`${ROOT}/package.json`, 'utf8')) as { version: string }).version

/** Two daemons that offer different tasks: a runs echo and noop, b runs echo and nap and ad-hoc commands. */
describe('the tasks each daemon offers, and versions', () => {
  const a = new DaemonProcess({
    name: 'ta',
    config: { ...TEST_CONFIG, tasks: { echo: { command: ['cat'] }, noop: { command: ['true'] } } }
  })
  let b: DaemonProcess
  beforeAll(async () => {
    await a.start()
    b = new DaemonProcess({
      name: 'tb',
      bootstrap: [a.addr],
      config: {
        ...TEST_CONFIG,
        tasks: { echo: { command: ['cat'] }, nap: { command: ['sh', '-c', 'sleep 0.3; cat'] } },
        allowAdHocCommands: true
      }
    })
    await b.start()
  })
  afterAll(async () => {
    await stopAll([a, b])
  })

  it('GET /v1/tasks lists each task with the live daemons that run it, from any daemon', async () => {
    for (const d of [a, b]) {
      const t = await waitUntil(`${d.name} to see both`, async () => {
        const t = await client(d.api).tasks()
        return t.tasks.find((x) => x.name === 'echo')?.peers.length === 2 ? t : null
      })
      expect(t).toEqual({
        tasks: [
          { name: 'echo', peers: [a.peerId, b.peerId].sort() },
          { name: 'nap', peers: [b.peerId] },
          { name: 'noop', peers: [a.peerId] }
        ],
        adHoc: [b.peerId]
      })
    }
    const cli = await shoal(['--api', a.api, 'tasks'])
    expect(cli.code).toBe(0)
    expect(cli.stdout).toMatch(/^TASK\s+DAEMONS\s+PEERS/)
    expect(cli.stdout).toMatch(new RegExp(`noop\\s+1\\s+${a.peerId}`))
    expect(cli.stdout).toMatch(new RegExp(`\\(ad-hoc commands\\)\\s+1\\s+${b.peerId}`))
  })

  it('health, every peer and `shoal version` tell the version', async () => {
    expect((await client(a.api).health()).version).toBe(VERSION)
    // b's version reached a through its heartbeats.
    const peers = await client(a.api).peers()
    expect(peers.map((p) => [p.peerId, p.version]).sort()).toEqual(
      [
        [a.peerId, VERSION],
        [b.peerId, VERSION]
      ].sort()
    )
    const v = await shoal(['--api', b.api, 'version'])
    expect([v.code, v.stderr]).toEqual([0, ''])
    expect(v.stdout).toBe(`cli     ${VERSION}\ndaemon  ${VERSION}  ${b.peerId}  ${b.api}\n`)
    // No daemon answers: the CLI's version still, and a line saying why there is no other.
    const alone = await shoal(['--api', 'http://127.0.0.1:9', 'version'])
    expect([alone.code, alone.stdout]).toEqual([0, `cli     ${VERSION}\n`])
    expect(alone.stderr).toMatch(
      /^shoal: daemon version unknown: cannot reach the daemon at http:\/\/127\.0\.0\.1:9/
    )
  })
})
