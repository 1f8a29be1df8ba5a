import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { connect } from 'node:net'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DaemonProcess, FAST, MAIN, sleep, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { ShoalClient } from '../../src/cli/client.ts'
import { apiError, health, reader, submit, waitState } from './helpers.ts'

const keyText = (hex: string) => `/key/swarm/psk/1.0.0/\n/base16/\n${hex}\n`

function run(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [MAIN, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : (err.code as number), stdout, stderr })
    )
  )
}

describe('private mesh: swarm keys', () => {
  const all: DaemonProcess[] = []
  afterAll(async () => {
    await stopAll(all)
  })

  it('daemons with the same key mesh and run a job; another key or none stays out', async () => {
    const gen = await run(['keygen', '--swarm'])
    expect(gen.code).toBe(0)
    expect(gen.stdout).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
    const first = new DaemonProcess({ name: 'k1', config: FAST })
    all.push(first)
    const keyFile = join(first.dataDir, 'swarm.key')
    writeFileSync(keyFile, gen.stdout)
    first.options.config = { ...FAST, swarmKey: keyFile }
    await first.start()
    const second = new DaemonProcess({
      name: 'k2',
      config: { ...FAST, swarmKey: keyFile },
      bootstrap: [first.addr]
    })
    all.push(second)
    await second.start()
    const other = new DaemonProcess({ name: 'other', bootstrap: [first.addr], config: FAST })
    all.push(other)
    const otherKey = join(other.dataDir, 'other.key')
    writeFileSync(otherKey, keyText('cd'.repeat(32)))
    other.options.config = { ...FAST, swarmKey: otherKey }
    const none = new DaemonProcess({ name: 'none', config: FAST, bootstrap: [first.addr, second.addr] })
    all.push(none)
    await Promise.all([other.start(), none.start()])

    await waitUntil('k1 and k2 to mesh', async () => (await reader(first.api).peers()).length === 2)
    const j = await submit(second.api, { task: 'echo', range: { start: 0, end: 20 } })
    await waitState(first.api, j.id, 'SUCCEEDED')
    await sleep(1000)
    for (const outsider of [other, none]) {
      const h = await health(outsider.api)
      expect(h.connections).toBe(0)
      expect(h.peers).toBe(1)
    }
    const ids = (await reader(first.api).peers()).map((p) => p.peerId).sort()
    expect(ids).toEqual([first.peerId, second.peerId].sort())
    expect((await health(first.api)).connections).toBe(1)
  })

  it('refuses to listen beyond loopback without a swarm key unless --insecure', async () => {
    const r = await run([
      'daemon',
      '--listen',
      '/ip4/0.0.0.0/tcp/0',
      '--api',
      '127.0.0.1:0',
      '--data-dir',
      '/tmp/shoal-never'
    ])
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(
      /listen \(from --listen\): \/ip4\/0\.0\.0\.0\/tcp\/0 is reachable beyond this host/
    )
    const api = await run(['daemon', '--api', '0.0.0.0:0', '--data-dir', '/tmp/shoal-never'])
    expect(api.code).toBe(2)
    expect(api.stderr).toMatch(
      /api \(from --api\): 0\.0\.0\.0:0 is reachable beyond this host; set apiTokens/
    )
  })
})

describe('authenticated API and bounded input', () => {
  const token = 'test-token-0123456789abcdef'
  const d = new DaemonProcess({
    name: 'auth',
    config: { ...FAST, apiTokens: { ops: token }, rateLimitPerMinute: 400, bodyLimitBytes: 1024 * 1024 }
  })
  beforeAll(async () => {
    await d.start()
  })
  afterAll(async () => {
    await stopAll([d])
  })

  it('no token or a wrong one → 401; the right one works from fetch and the CLI', async () => {
    expect((await fetch(`${d.api}/v1/health`)).status).toBe(200)
    for (const headers of [
      {},
      { authorization: 'Bearer wrong-token-0123456789' },
      { authorization: token }
    ]) {
      const res = await fetch(`${d.api}/v1/jobs`, { headers })
      expect(res.status).toBe(401)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('UNAUTHORIZED')
    }
    expect((await fetch(`${d.api}/metrics`)).status).toBe(401)
    const ok = await fetch(`${d.api}/v1/jobs`, { headers: { authorization: `Bearer ${token}` } })
    expect(ok.status).toBe(200)
    const spec = join(d.dataDir, 'job.json')
    writeFileSync(spec, JSON.stringify({ task: 'echo', items: ['t'] }))
    expect((await run(['submit', spec, '--wait', '--api', d.api])).code).toBe(2)
    const viaFlag = await run(['submit', spec, '--wait', '--api', d.api, '--token', token])
    expect(viaFlag.code).toBe(0)
    const viaEnv = await run(['jobs', '--api', d.api], { SHOAL_TOKEN: token })
    expect(viaEnv.code).toBe(0)
    expect(viaEnv.stdout).toContain(viaFlag.stdout.trim())
  })

  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }

  it('the dashboard page and its files need no token; no path through them reaches the API without one', async () => {
    for (const path of ['/', '/ui/app.js', '/ui/api.js', '/ui/style.css', '/ui/vendor/preact.mjs']) {
      const res = await fetch(`${d.api}${path}`)
      expect([path, res.status]).toEqual([path, 200])
      expect(res.headers.get('content-security-policy')).toContain("connect-src 'self'")
      await res.arrayBuffer()
    }
    // Sent as written (fetch would resolve the dots): still 401 or 404, never the API's answer.
    const raw = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) =>
        request({ host: new URL(d.api).hostname, port: new URL(d.api).port, path }, (res) => {
          let body = ''
          res.on('data', (c: Buffer) => {
            body += c.toString()
          })
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        })
          .on('error', reject)
          .end()
      )
    for (const path of [
      '/ui/../v1/jobs',
      '/ui/%2e%2e/v1/jobs',
      '/ui/vendor/..%2f..%2f..%2fpackage.json',
      '/ui/vendor/..%2Fdashboard.ts',
      '/ui/../metrics',
      '/ui/nope',
      '/?/v1/jobs'
    ]) {
      const res = await raw(path)
      if (path === '/?/v1/jobs') expect(res.body).toContain('<!doctype html>')
      else expect([path, res.status, res.body]).toEqual([path, 404, expect.stringContaining('NOT_FOUND')])
    }
    expect((await fetch(`${d.api}/v1/jobs?/ui/`)).status).toBe(401)
  })

  it('a 20 MB body → 413; an ad-hoc command → 403 and no process started', async () => {
    const big = JSON.stringify({ task: 'echo', items: ['x'.repeat(20 * 1024 * 1024)] })
    // Over a raw socket: send the headers and stream the 20 MB body until the daemon answers
    // (it answers 413 from the length, without reading it all); ignore the broken pipe after.
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const url = new URL(d.api)
      const sock = connect(Number(url.port), url.hostname)
      let answer = ''
      let done = false
      sock.on('data', (c: Buffer) => {
        answer += c.toString('latin1')
        const m = /^HTTP\/1\.1 (\d{3})[\s\S]*?\r\n\r\n([\s\S]*)$/.exec(answer)
        if (m !== null && (m[2] as string).includes('}}')) {
          done = true
          sock.destroy()
          resolve({ status: Number(m[1]), body: m[2] as string })
        }
      })
      sock.on('error', (err: NodeJS.ErrnoException) => {
        if (!done && err.code !== 'EPIPE' && err.code !== 'ECONNRESET') reject(err)
      })
      sock.on('connect', async () => {
        sock.write(
          `POST /v1/jobs HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${token}\r\n` +
            `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(big)}\r\n\r\n`
        )
        const body = Buffer.from(big)
        for (let off = 0; off < body.length && !done && !sock.destroyed; off += 65536) {
          await new Promise<void>((ok) => sock.write(body.subarray(off, off + 65536), () => ok()))
        }
      })
    })
    expect(res.status).toBe(413)
    const bodyJson = res.body.slice(res.body.indexOf('{'), res.body.lastIndexOf('}') + 1)
    expect((JSON.parse(bodyJson) as { error: { code: string } }).error.code).toBe('PAYLOAD_TOO_LARGE')
    const before = await (await fetch(`${d.api}/metrics`, { headers: auth })).text()
    const marker = join(d.dataDir, 'pwned')
    const adhoc = await apiError(
      new ShoalClient(d.api, { token }).submit({
        task: 'echo',
        command: ['sh', '-c', `touch ${marker}`],
        items: ['x']
      })
    )
    expect(adhoc.status).toBe(403)
    expect(adhoc.code).toBe('AD_HOC_NOT_ALLOWED')
    await sleep(500)
    const { existsSync } = await import('node:fs')
    expect(existsSync(marker)).toBe(false)
    const after = await (await fetch(`${d.api}/metrics`, { headers: auth })).text()
    const tries = (m: string) =>
      Number(/shoal_fragment_tries_total\{result="success"\} (\d+)/.exec(m)?.[1] ?? 0)
    expect(tries(after)).toBe(tries(before))
    // The refused submit left the daemon serving.
    expect((await health(d.api)).status).toBe('ok')
  })

  it('rate-limits a client past its budget with 429', async () => {
    let limited = 0
    for (let i = 0; i < 450; i++) {
      const res = await fetch(`${d.api}/v1/peers`, { headers: auth })
      if (res.status === 429) {
        limited++
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('RATE_LIMITED')
      } else await res.arrayBuffer()
    }
    expect(limited).toBeGreaterThan(0)
    expect((await fetch(`${d.api}/v1/health`)).status).toBe(200)
  })
})
