import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DaemonProcess, FAST, stopAll } from '../../scripts/lib/local-mesh.ts'
import { shoal } from './helpers.ts'

describe('CLI exit codes without a daemon', () => {
  it('a bad flag value → exit 2 and one line naming the field', async () => {
    const r = await shoal(['daemon', '--capacity', '0', '--data-dir', '/tmp/shoal-never'])
    expect(r.code).toBe(2)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/capacity \(from --capacity\): must be >= 1/)
  })
  it('a bad env value → exit 2 naming the variable', async () => {
    const r = await shoal(['daemon'], { SHOAL_HEARTBEAT_MS: 'often' })
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/heartbeatMs \(from SHOAL_HEARTBEAT_MS\)/)
  })
  it('an unknown flag or command → exit 2', async () => {
    expect((await shoal(['daemon', '--frobnicate'])).code).toBe(2)
    expect((await shoal(['frobnicate'])).code).toBe(2)
  })
  it('an unreachable daemon → exit 3', async () => {
    const r = await shoal(['jobs', '--api', 'http://127.0.0.1:1'])
    expect(r.code).toBe(3)
    expect(r.stderr).toMatch(/cannot reach the daemon at http:\/\/127\.0\.0\.1:1/)
    const viaEnv = await shoal(['peers'], { SHOAL_API: 'http://127.0.0.1:1' })
    expect(viaEnv.code).toBe(3)
  })
})

describe('CLI against a daemon', () => {
  const d = new DaemonProcess({ name: 'cli', config: FAST })
  let ok = ''
  let bad = ''
  let failing = ''

  beforeAll(async () => {
    await d.start()
    ok = join(d.dataDir, 'ok.json')
    bad = join(d.dataDir, 'bad.json')
    failing = join(d.dataDir, 'failing.json')
    writeFileSync(ok, JSON.stringify({ task: 'echo', items: ['a', 'b', 'c'], fragmentSize: 2 }))
    writeFileSync(bad, JSON.stringify({ task: 'echo', items: ['a'], fragmentSize: 0 }))
    writeFileSync(failing, JSON.stringify({ task: 'fail', items: [1], attempts: 2 }))
  })
  afterAll(async () => {
    await stopAll([d])
  })

  it('submit --wait prints the id and exits 0 when the job succeeds; output prints its stdout', async () => {
    const r = await shoal(['submit', ok, '--wait', '--api', d.api])
    expect(r.code).toBe(0)
    const id = r.stdout.trim()
    expect(id).toMatch(/^[0-9A-Z]{26}$/)
    expect(r.stderr).toMatch(/2\/2 .*SUCCEEDED/)
    const out = await shoal(['output', id, '--api', d.api])
    expect(out.stdout).toBe('a\nb\nc\n')
    const status = await shoal(['status', id, '--api', d.api])
    expect(JSON.parse(status.stdout)).toMatchObject({ id, state: 'SUCCEEDED', fragments: 2 })
    const frags = await shoal(['fragments', id, '--api', d.api])
    expect(frags.stdout.split('\n')[0]).toMatch(/^PATH\s+ITEMS\s+STATE/)
    expect(frags.stdout).toMatch(/^1\s+\S+\s+SUCCEEDED/m)
    const jobs = await shoal(['jobs', '--api', d.api])
    expect(jobs.stdout).toContain(id)
  })

  it('submit - reads the spec from stdin', async () => {
    const r = await shoal(
      ['submit', '-', '--api', d.api],
      {},
      JSON.stringify({ task: 'echo', range: { start: 0, end: 2 } })
    )
    expect(r.code).toBe(0)
    expect(r.stdout.trim()).toMatch(/^[0-9A-Z]{26}$/)
  })

  it('submit --wait exits 1 when the job fails', async () => {
    const r = await shoal(['submit', failing, '--wait', '--api', d.api])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/FAILED/)
  })

  it('a rejected spec, a missing file or an unknown job → exit 2 with the reason', async () => {
    const r = await shoal(['submit', bad, '--api', d.api])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/400 INVALID_SPEC: fragmentSize: must be >= 1/)
    expect((await shoal(['submit', '/nonexistent.json', '--api', d.api])).code).toBe(2)
    const unknown = await shoal(['status', '01UNKNOWN', '--api', d.api])
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/404 JOB_NOT_FOUND/)
  })

  it('peers lists the daemon itself as alive', async () => {
    const r = await shoal(['peers', '--json'], { SHOAL_API: d.api })
    expect(r.code).toBe(0)
    const peers = JSON.parse(r.stdout) as Array<{ peerId: string; state: string }>
    expect(peers).toEqual([expect.objectContaining({ peerId: d.peerId, state: 'alive' })])
  })
})
