import type { NetworkInterfaceInfo } from 'node:os'
import { describe, expect, it } from 'vitest'
import { advertisedApiUrl } from '../../../src/daemon/advertise.ts'
import { loadConfig } from '../../../src/daemon/config.ts'

const nic = (address: string, family: 'IPv4' | 'IPv6', internal = false): NetworkInterfaceInfo =>
  ({ address, family, internal, netmask: '', mac: '', cidr: null }) as NetworkInterfaceInfo
const HOST_NICS = {
  lo: [nic('127.0.0.1', 'IPv4', true), nic('::1', 'IPv6', true)],
  docker0: [nic('169.254.3.1', 'IPv4')],
  eth0: [nic('fe80::1', 'IPv6'), nic('10.0.0.9', 'IPv4')]
}
const ID = '/p2p/12D3KooWB2HycvHomMMcPb5djXqKut1JsKDaMrnfQtEbjzFHV7sq'

describe('the API URL a daemon advertises', () => {
  it('is advertiseApi when set, without a trailing slash', () => {
    expect(
      advertisedApiUrl({
        bound: 'http://0.0.0.0:7070',
        advertiseApi: 'https://shoal-1.example.org/',
        multiaddrs: [`/ip4/10.0.0.1/tcp/7071${ID}`],
        interfaces: HOST_NICS
      })
    ).toBe('https://shoal-1.example.org')
  })

  it('is the bound URL when the API listens on one address', () => {
    for (const bound of ['http://127.0.0.1:7070', 'http://10.0.0.1:7070', 'http://[::1]:7070'])
      expect(
        advertisedApiUrl({ bound, multiaddrs: [`/ip4/10.0.0.5/tcp/7071${ID}`], interfaces: HOST_NICS })
      ).toBe(bound)
  })

  it('on 0.0.0.0: the first p2p address others can reach, with the API port', () => {
    expect(
      advertisedApiUrl({
        bound: 'http://0.0.0.0:7070',
        multiaddrs: [
          `/ip4/127.0.0.1/tcp/7071${ID}`,
          `/ip4/169.254.3.1/tcp/7071${ID}`,
          `/ip6/2001:db8::1/tcp/7071${ID}`,
          `/ip4/10.0.0.1/tcp/7071${ID}`,
          `/ip4/10.0.0.2/tcp/7071${ID}`
        ],
        interfaces: HOST_NICS
      })
    ).toBe('http://10.0.0.1:7070')
  })

  it('on ::, an IPv6 p2p address qualifies too (in brackets)', () => {
    expect(
      advertisedApiUrl({
        bound: 'http://[::]:7070',
        multiaddrs: [
          `/ip6/::1/tcp/7071${ID}`,
          `/ip6/fe80::2/tcp/7071${ID}`,
          `/ip6/2001:db8::1/tcp/7071${ID}`
        ],
        interfaces: HOST_NICS
      })
    ).toBe('http://[2001:db8::1]:7070')
  })

  it('on 0.0.0.0 with only loopback p2p addresses: the first non-internal IPv4 of the host', () => {
    expect(
      advertisedApiUrl({
        bound: 'http://0.0.0.0:41234',
        multiaddrs: [`/ip4/127.0.0.1/tcp/7071${ID}`, `/ip4/0.0.0.0/tcp/7071${ID}`],
        interfaces: HOST_NICS
      })
    ).toBe('http://10.0.0.9:41234')
  })

  it('on 0.0.0.0 with nothing better: the bound URL, as before', () => {
    expect(
      advertisedApiUrl({
        bound: 'http://0.0.0.0:7070',
        multiaddrs: [`/ip4/127.0.0.1/tcp/7071${ID}`],
        interfaces: { lo: [nic('127.0.0.1', 'IPv4', true)] }
      })
    ).toBe('http://0.0.0.0:7070')
  })
})

describe('the advertiseApi setting', () => {
  it('takes an http(s) URL from the file, env or --advertise-api', () => {
    expect(loadConfig({ advertiseApi: 'http://10.0.0.1:7070' }, {}).advertiseApi).toBe('http://10.0.0.1:7070')
    expect(loadConfig({}, { SHOAL_ADVERTISE_API: 'https://a.example' }).advertiseApi).toBe(
      'https://a.example'
    )
    expect(loadConfig({}, {}).advertiseApi).toBeUndefined()
  })

  it.each([
    ['10.0.0.1:7070', 'is not a URL'],
    ['not a url', 'is not a URL'],
    ['ftp://10.0.0.1', 'is not an http:// or https:// URL'],
    ['http://0.0.0.0:7070', 'is an address nobody can dial'],
    ['http://u:p@10.0.0.1:7070', 'must be only scheme, host, port and path']
  ])('refuses %s, naming the field', (value, why) => {
    expect(() => loadConfig({ advertiseApi: value }, {})).toThrow(
      `advertiseApi (from --advertise-api): "${value}" ${why}`
    )
  })
})
