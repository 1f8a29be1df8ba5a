import type { NetworkInterfaceInfo } from 'node:os'

/** What the choice of the advertised API URL looks at (all given, so tests need no host). */
export interface AdvertiseInput {
  /** The URL the API server bound, e.g. `http://0.0.0.0:7070` (the port resolved). */
  bound: string
  /** The operator's `advertiseApi` setting, if any. */
  advertiseApi?: string | undefined
  /** This daemon's p2p multiaddrs as libp2p reports them (wildcards expanded or not). */
  multiaddrs: readonly string[]
  /** The host's network interfaces (`os.networkInterfaces()`). */
  interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>
}

const WILDCARD = new Set(['0.0.0.0', '::', '[::]'])

/** Is this an address only this host (or only this link) can use? */
function local(host: string): boolean {
  const h = host.toLowerCase()
  return (
    WILDCARD.has(h) ||
    /^127\./.test(h) ||
    h === '::1' ||
    h === 'localhost' ||
    /^169\.254\./.test(h) ||
    /^fe[89ab][0-9a-f]:/.test(h)
  )
}

const urlHost = (host: string): string => (host.includes(':') ? `[${host}]` : host)

/**
 * The API URL this daemon announces to its peers (heartbeats, `/v1/peers`, the dashboard's
 * links): `advertiseApi` when set; else the bound URL, unless the API listens on every address
 * (0.0.0.0 or ::), which nobody can dial. Then: the host of the first p2p multiaddr others can
 * reach (the mesh already reaches this daemon there), else the host's first non-internal IPv4,
 * with the API's port. An API bound to 0.0.0.0 serves IPv4 only, so only IPv4 hosts qualify.
 */
export function advertisedApiUrl(input: AdvertiseInput): string {
  if (input.advertiseApi !== undefined) return input.advertiseApi.replace(/\/+$/, '')
  const bound = new URL(input.bound)
  const boundHost = bound.hostname.replace(/^\[|\]$/g, '')
  if (!WILDCARD.has(boundHost) && !WILDCARD.has(bound.hostname)) return input.bound
  const ipv4Only = boundHost === '0.0.0.0'
  const port = bound.port
  for (const addr of input.multiaddrs) {
    const m = /^\/(ip4|ip6)\/([^/]+)\/tcp\//.exec(addr)
    if (m === null || (ipv4Only && m[1] !== 'ip4')) continue
    const host = m[2] as string
    if (!local(host)) return `${bound.protocol}//${urlHost(host)}:${port}`
  }
  for (const infos of Object.values(input.interfaces)) {
    for (const info of infos ?? []) {
      if (info.family === 'IPv4' && !info.internal && !local(info.address))
        return `${bound.protocol}//${info.address}:${port}`
    }
  }
  return input.bound
}
