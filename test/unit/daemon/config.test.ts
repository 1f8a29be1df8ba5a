import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { envName, loadConfig } from '../../../src/daemon/config.ts'

const BOOT_A = '/ip4/127.0.0.1/tcp/1/p2p/12D3KooWB2HycvHomMMcPb5djXqKut1JsKDaMrnfQtEbjzFHV7sq'
const BOOT_B = '/ip4/127.0.0.1/tcp/2/p2p/12D3KooWB9fFVDECeoG25UHE2pSCBjZoUbD6xhf6aPMujZSZtNr4'
const dir = mkdtempSync(join(tmpdir(), 'shoal-config-'))
const file = (name: string, content: unknown) => {
  const f = join(dir, name)
  writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content))
  return f
}

describe('config', () => {
  it('has embedded defaults that work with no file, env or flags', () => {
    const c = loadConfig({}, {})
    expect(c.dataDir).toBe('./.shoal')
    expect(c.api).toBe('127.0.0.1:7070')
    expect(c.listen).toEqual(['/ip4/127.0.0.1/tcp/7071'])
    expect(Object.keys(c.tasks)).toContain('checksum')
    expect(c.allowAdHocCommands).toBe(false)
  })

  it('applies defaults < file < env < flags', () => {
    const f = file('p.json', { capacity: 2, name: 'from-file', heartbeatMs: 300 })
    const env = { SHOAL_CAPACITY: '3', SHOAL_NAME: 'from-env' }
    const c = loadConfig({ config: f, name: 'from-flag' }, env)
    expect(c.name).toBe('from-flag')
    expect(c.capacity).toBe(3)
    expect(c.heartbeatMs).toBe(300)
    expect(loadConfig({ config: f }, {}).capacity).toBe(2)
  })

  it('reads lists from env as comma-separated values', () => {
    const c = loadConfig({}, { SHOAL_BOOTSTRAP: `${BOOT_A}, ${BOOT_B}` })
    expect(c.bootstrap).toEqual([BOOT_A, BOOT_B])
  })

  it('has HTTP limits with defaults, and the header time may not exceed the request time', () => {
    const c = loadConfig({}, {})
    expect([
      c.httpMaxConnections,
      c.httpHeadersTimeoutMs,
      c.httpRequestTimeoutMs,
      c.httpKeepAliveTimeoutMs
    ]).toEqual([1024, 10_000, 30_000, 5000])
    expect(loadConfig({}, { SHOAL_HTTP_MAX_CONNECTIONS: '20' }).httpMaxConnections).toBe(20)
    expect(() => loadConfig({}, { SHOAL_HTTP_HEADERS_TIMEOUT_MS: '40000' })).toThrow(
      /^httpHeadersTimeoutMs \(from SHOAL_HTTP_HEADERS_TIMEOUT_MS\): must not be greater than httpRequestTimeoutMs \(30000\)$/
    )
  })

  it.each([
    [{ listen: ['127.0.0.1:7351'] }, {}, /^listen \(from --listen\): "127\.0\.0\.1:7351" is not a multiaddr/],
    [
      { listen: ['/ip4/127.0.0.1/udp/1'] },
      {},
      /^listen \(from --listen\): "\/ip4\/127\.0\.0\.1\/udp\/1" is not a TCP listen/
    ],
    [
      {},
      { SHOAL_LISTEN: '/ip4/127.0.0.1/tcp/70000' },
      /^listen \(from SHOAL_LISTEN\): .*70000" is not a multiaddr \(Value must be/
    ],
    [{ bootstrap: ['foo'] }, {}, /^bootstrap \(from --bootstrap\): "foo" is not a multiaddr/],
    [
      { bootstrap: ['/ip4/127.0.0.1/tcp/1'] },
      {},
      /^bootstrap \(from --bootstrap\): .* has no \/p2p\/<peer id>/
    ],
    [
      { bootstrap: ['/ip4/127.0.0.1/tcp/1/p2p/x'] },
      {},
      /^bootstrap \(from --bootstrap\): .*"x" is not a peer id$/
    ]
  ])('parses multiaddrs up front: %j %j', (flags, env, message) => {
    expect(() => loadConfig(flags, env)).toThrow(message)
  })

  it('a config file with tasks replaces the embedded tasks', () => {
    const f = file('t.json', { tasks: { mine: { command: ['cat'] } } })
    expect(Object.keys(loadConfig({ config: f }, {}).tasks)).toEqual(['mine'])
  })

  it.each([
    [{ capacity: 0 }, {}, /^capacity \(from --capacity\): must be >= 1$/],
    [{ capacity: 'lots' as unknown as number }, {}, /^capacity \(from --capacity\): must be integer$/],
    [{}, { SHOAL_HEARTBEAT_MS: 'soon' }, /^heartbeatMs \(from SHOAL_HEARTBEAT_MS\): must be integer$/],
    [
      { api: 'localhost' },
      {},
      /^api \(from --api\): must be HOST:PORT, e\.g\. 127\.0\.0\.1:7070 \(got "localhost"\)$/
    ],
    [{ api: '127.0.0.1:70000' }, {}, /^api \(from --api\): port must be 0\.\.65535$/],
    [{ logLevel: 'loud' as 'info' }, {}, /^logLevel \(from --log-level\): must be one of/]
  ])('rejects %j %j with one line naming the field', (flags, env, message) => {
    expect(() => loadConfig(flags, env)).toThrow(message)
  })

  it('caps processes per fragment: a daemon-wide default, a per-task override, both checked', () => {
    expect(loadConfig({}, {}).maxProcesses).toBe(512)
    expect(loadConfig({}, { SHOAL_MAX_PROCESSES: '64' }).maxProcesses).toBe(64)
    const ok = file('procs.json', { tasks: { t: { command: ['x'], maxProcesses: 50 } } })
    expect(loadConfig({ config: ok }, {}).tasks.t?.maxProcesses).toBe(50)
    const bad = file('procs-bad.json', { tasks: { t: { command: ['x'], maxProcesses: 0 } } })
    expect(() => loadConfig({ config: bad }, {})).toThrow(
      /^tasks\.t\.maxProcesses \(from config file .*\): must be >= 1$/
    )
    expect(() => loadConfig({}, { SHOAL_MAX_PROCESSES: '0' })).toThrow(
      /^maxProcesses \(from SHOAL_MAX_PROCESSES\): must be >= 1$/
    )
  })

  it('names fields inside the config file', () => {
    const f = file('bad.json', { tasks: { t: { command: [] } } })
    expect(() => loadConfig({ config: f }, {})).toThrow(
      /^tasks\.t\.command \(from config file .*\): must NOT have fewer than 1 items$/
    )
    const g = file('bad2.json', { surprise: 1 })
    expect(() => loadConfig({ config: g }, {})).toThrow(/^surprise \(from config file .*\): unknown field$/)
    const h = file('bad3.json', '{ not json')
    expect(() => loadConfig({ config: h }, {})).toThrow(/is not valid JSON/)
    expect(() => loadConfig({ config: join(dir, 'missing.json') }, {})).toThrow(/cannot read/)
    const e = file('bad4.json', { tasks: { t: { command: ['x'], env: { SHOAL_JOB_ID: 'x' } } } })
    expect(() => loadConfig({ config: e }, {})).toThrow(/^tasks\.t\.env\.SHOAL_JOB_ID/)
  })

  it('refuses what peers would refuse in its heartbeats: an advertised API over 256 characters, more than 1,024 tasks', () => {
    const long = file('adv.json', { advertiseApi: `http://example.org/${'x'.repeat(240)}` })
    expect(() => loadConfig({ config: long }, {})).toThrow(/^advertiseApi /)
    const tasks = Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [`t${i}`, { command: ['true'] }]))
    expect(() => loadConfig({ config: file('many.json', { tasks }) }, {})).toThrow(/^tasks /)
  })

  it('bounds tenants’ weights and running limits, naming the field', () => {
    const ok = file('t-ok.json', { tenants: { a: { weight: 0.5, maxRunning: 4096 } } })
    expect(loadConfig({ config: ok }, {}).tenants.a).toEqual({ weight: 0.5, maxRunning: 4096 })
    for (const [t, field] of [
      [{ weight: 0 }, 'weight'],
      [{ weight: 5e-324 }, 'weight'],
      [{ weight: 1e6 }, 'weight'],
      [{ maxRunning: 4097 }, 'maxRunning'],
      [{ maxRunning: 0 }, 'maxRunning']
    ] as const) {
      const f = file('t-bad.json', { tenants: { a: t } })
      expect(() => loadConfig({ config: f }, {})).toThrow(new RegExp(`^tenants\\.a\\.${field} `))
    }
  })

  it('refuses to listen beyond loopback without a swarm key or API tokens, unless insecure', () => {
    expect(() => loadConfig({ listen: ['/ip4/0.0.0.0/tcp/0'] }, {})).toThrow(
      /^listen \(from --listen\): \/ip4\/0\.0\.0\.0\/tcp\/0 is reachable beyond this host; set swarmKey/
    )
    expect(() => loadConfig({ api: '0.0.0.0:0' }, {})).toThrow(
      /^api \(from --api\): 0\.0\.0\.0:0 is reachable beyond this host; set apiTokens/
    )
    expect(
      loadConfig({ listen: ['/ip4/0.0.0.0/tcp/0'], api: '0.0.0.0:0', insecure: true }, {}).insecure
    ).toBe(true)
    const key = file('swarm.key', '/key/swarm/psk/1.0.0/\n/base16/\n' + 'ab'.repeat(32) + '\n')
    const ok = loadConfig(
      { listen: ['/ip4/0.0.0.0/tcp/0'], swarmKey: key, api: '0.0.0.0:0', apiToken: ['a-long-enough-token'] },
      {}
    )
    expect(ok.apiTokens).toEqual({ default: 'a-long-enough-token' })
    const bad = file('bad.key', 'not a key')
    expect(() => loadConfig({ swarmKey: bad }, {})).toThrow(
      /^swarmKey \(from --swarm-key\): .* is not a swarm key/
    )
    expect(() => loadConfig({ apiToken: ['short'] }, {})).toThrow(
      /^apiTokens\.default \(from --api-token\): must NOT have fewer than 16 characters/
    )
    expect(
      loadConfig({}, { SHOAL_API_TOKEN: 'token-from-the-env-1,token-from-the-env-2' }).apiTokens
    ).toEqual({
      default: 'token-from-the-env-1',
      'default-2': 'token-from-the-env-2'
    })
  })

  it('maps keys to SHOAL_ env names', () => {
    expect(envName('dataDir')).toBe('SHOAL_DATA_DIR')
    expect(envName('heartbeatMs')).toBe('SHOAL_HEARTBEAT_MS')
  })
})
