import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { hostname } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { Ajv, type ErrorObject } from 'ajv'
import { ENGINE_DEFAULTS, type EngineConfig } from '../core/config.ts'
import { describeSystemError, ShoalError } from '../core/errors.ts'
import type { TaskConfig } from '../core/task.ts'
import { NETNS_DIR, networkTool, taskNetwork } from '../worker/network.ts'

/**
 * The daemon's configuration (CONTRACT §1): the engine's settings (core/config.ts) and the
 * daemon's own. Every field has an embedded default.
 */
export interface DaemonConfig extends EngineConfig {
  /** Where the daemon keeps its identity, state and peer store. */
  dataDir: string
  /** p2p listen multiaddrs. */
  listen: string[]
  /** HTTP API address, HOST:PORT (port 0 picks a free port). */
  api: string
  /**
   * The API URL peers are told (heartbeats, /v1/peers), e.g. `http://10.0.0.1:7070`. Unset: the
   * bound address, or for an API on 0.0.0.0 or :: the host of the first p2p address others can
   * reach (else the host's first non-internal IPv4), with the API's port.
   */
  advertiseApi?: string
  /** Multiaddrs (with /p2p/<id>) of daemons to join through. */
  bootstrap: string[]
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Largest accepted HTTP body. */
  bodyLimitBytes: number
  /** Most HTTP connections open at once (event streams included); new ones beyond it are closed at once. */
  httpMaxConnections: number
  /** How long a client may take to send a request's headers before it gets 408 and is closed. */
  httpHeadersTimeoutMs: number
  /** How long a client may take to send a whole request, body included, before it gets 408 and is closed. */
  httpRequestTimeoutMs: number
  /** How long an idle keep-alive connection stays open waiting for the next request. */
  httpKeepAliveTimeoutMs: number
  /** Most peers this daemon dials on its own. */
  maxDialPeers: number
  /**
   * No connection this long, while the daemon has bootstrap addresses or had peers: it logs a
   * warning saying why it thinks it is cut off, and /v1/health shows `isolated`.
   */
  isolatedAfterMs: number
  /** File with the mesh's pre-shared swarm key (`shoal keygen --swarm`); daemons without it cannot connect. */
  swarmKey?: string
  /** API bearer tokens by tenant name; when any is set, every route but /v1/health needs one. */
  apiTokens: Record<string, string>
  /** Allow listening beyond loopback without a swarm key or API tokens. */
  insecure: boolean
  /** Requests per minute per client (by token tenant, else by address); 0 turns the limit off. */
  rateLimitPerMinute: number
  /** Test-only: enables POST /v1/_test/partition (chaos runs). Never set in production. */
  testHooks: boolean
  /**
   * Start over with an empty state store when the one in the data dir is damaged, missing or
   * was emptied: it is moved aside (kept), and the daemon resyncs from its peers. One start only.
   */
  resetState: boolean
}

const here = dirname(fileURLToPath(import.meta.url))
/** The embedded defaults file (tasks and addresses). */
export const DEFAULT_CONFIG_FILE = join(here, '..', '..', 'config', 'default.json')

const BUILTIN: Omit<
  DaemonConfig,
  'tasks' | 'dataDir' | 'listen' | 'api' | 'bootstrap' | 'allowAdHocCommands'
> = {
  ...ENGINE_DEFAULTS,
  name: hostname(),
  logLevel: 'info',
  bodyLimitBytes: 8 * 1024 * 1024,
  httpMaxConnections: 1024,
  httpHeadersTimeoutMs: 10_000,
  httpRequestTimeoutMs: 30_000,
  httpKeepAliveTimeoutMs: 5000,
  maxDialPeers: 16,
  isolatedAfterMs: 10_000,
  testHooks: false,
  apiTokens: {},
  insecure: false,
  rateLimitPerMinute: 6000,
  resetState: false
}

const int = (minimum: number, maximum = Number.MAX_SAFE_INTEGER) => ({ type: 'integer', minimum, maximum })
/** The largest stdout cap a config may set (64 GiB). */
const MAX_OUTPUT_LIMIT = 64 * 1024 ** 3

const strList = { type: 'array', items: { type: 'string', minLength: 1 } }

const taskSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    command: { type: 'array', minItems: 1, items: { type: 'string', minLength: 1 } },
    protocol: { enum: ['ndjson'] },
    network: { type: 'string', pattern: '^[A-Za-z0-9][\\w.-]{0,63}$' },
    module: { type: 'string', minLength: 1 },
    export: { type: 'string', pattern: '^[A-Za-z_$][\\w$]*$' },
    maxMemoryMb: int(8, 1_000_000),
    minWarm: int(0, 1024),
    maxWarm: int(1, 1024),
    env: {
      type: 'object',
      additionalProperties: { type: 'string' },
      propertyNames: { pattern: '^(?!SHOAL_)' }
    },
    timeoutSeconds: { type: 'number', exclusiveMinimum: 0 },
    fragmentSize: int(1),
    maxOutputBytes: int(1, MAX_OUTPUT_LIMIT),
    maxProcesses: int(1, 1_000_000),
    user: { type: 'string', pattern: '^[a-z_][a-z0-9_-]{0,31}$' }
  }
}

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['dataDir', 'listen', 'api', 'tasks'],
  properties: {
    dataDir: { type: 'string', minLength: 1 },
    listen: { ...strList, minItems: 1 },
    api: { type: 'string', pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s]+):([0-9]{1,5})$' },
    // Heartbeats carry it; peers refuse an api longer than 256 (core/wire.ts).
    advertiseApi: { type: 'string', minLength: 1, maxLength: 256 },
    bootstrap: strList,
    name: { type: 'string', minLength: 1, maxLength: 128 },
    tasks: {
      type: 'object',
      // Heartbeats name them all; peers refuse more than 1,024 (core/wire.ts LIMITS.maxTasks).
      maxProperties: 1024,
      propertyNames: { pattern: '^[A-Za-z0-9][\\w.-]{0,63}$' },
      additionalProperties: taskSchema
    },
    allowAdHocCommands: { type: 'boolean' },
    capacity: int(1, 1024),
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
    heartbeatMs: int(10, 60_000),
    suspectMs: int(50, 600_000),
    syncIntervalMs: int(100, 3_600_000),
    stealDelayMs: int(0, 3_600_000),
    tickMs: int(5, 60_000),
    hostLostLimit: int(0, 100),
    killGraceMs: int(0, 600_000),
    shutdownGraceMs: int(0, 3_600_000),
    maxOutputBytes: int(1, MAX_OUTPUT_LIMIT),
    inlineOutputBytes: int(0, 1024 * 1024),
    outputReplicas: int(1, 16),
    blobCheckMs: int(100, 3_600_000),
    blobGraceMs: int(0, 86_400_000),
    maxProcesses: int(1, 1_000_000),
    maxItemsPerJob: int(1, 100_000_000),
    maxFragmentsPerJob: int(1, 10_000_000),
    bodyLimitBytes: int(1024, 1024 * 1024 * 1024),
    httpMaxConnections: int(1, 1_000_000),
    httpHeadersTimeoutMs: int(100, 600_000),
    httpRequestTimeoutMs: int(100, 3_600_000),
    httpKeepAliveTimeoutMs: int(100, 600_000),
    deltaBatchMs: int(0, 10_000),
    maxDialPeers: int(1, 1000),
    isolatedAfterMs: int(100, 3_600_000),
    ackReplicas: int(1, 16),
    ackTimeoutMs: int(1, 600_000),
    scheduleStepMs: int(10, 600_000),
    metricsFlushMs: int(10, 600_000),
    testHooks: { type: 'boolean' },
    retryBackoffMs: int(0, 3_600_000),
    retryBackoffMaxMs: int(0, 86_400_000),
    retainFinishedMs: int(0, 365 * 86_400_000),
    tombstoneDays: { type: 'number', minimum: 2, maximum: 3650 },
    compactedOutput: { enum: ['keep', 'drop'] },
    swarmKey: { type: 'string', minLength: 1 },
    apiTokens: {
      type: 'object',
      propertyNames: { pattern: '^[A-Za-z0-9][\\w.-]{0,63}$' },
      additionalProperties: { type: 'string', minLength: 16, maxLength: 512 }
    },
    tenants: {
      type: 'object',
      propertyNames: { pattern: '^[A-Za-z0-9][\\w.-]{0,63}$' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          weight: { type: 'number', minimum: 0.001, maximum: 1000 },
          // Slots are dealt out one by one up to MAX_RANKED_SLOTS (core/hrw.ts).
          maxRunning: int(1, 4096),
          maxActiveJobs: int(1, 10_000_000),
          maxItemsPerJob: int(1, 100_000_000),
          admin: { type: 'boolean' }
        }
      }
    },
    insecure: { type: 'boolean' },
    rateLimitPerMinute: int(0, 10_000_000),
    resetState: { type: 'boolean' }
  }
} as const

const ajv = new Ajv({ allErrors: false, strict: true })
const validate = ajv.compile<DaemonConfig>(schema)

/** Flags as the CLI parsed them (only those given). */
export type ConfigFlags = Partial<DaemonConfig> & { config?: string; apiToken?: string[] }

/** Tokens given without names belong to the default tenant: default, default-2, … */
function namedTokens(tokens: string[]): Record<string, string> {
  return Object.fromEntries(tokens.map((t, i) => [i === 0 ? 'default' : `default-${i + 1}`, t]))
}

/** Env var of each top-level key: SHOAL_DATA_DIR for dataDir, and so on. */
export function envName(key: string): string {
  return `SHOAL_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`
}

const ENV_SKIPPED = new Set(['tasks', 'apiTokens', 'tenants'])

/**
 * Build the config: embedded defaults < config file < SHOAL_* env < flags. Validated once,
 * here; a bad value throws CONFIG_INVALID with one line naming the field and its source.
 */
export function loadConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv = process.env): DaemonConfig {
  return resolveConfig(flags, env).config
}

/** A config and where each of its top-level keys came from ('default', '--data-dir', SHOAL_API…). */
export interface ResolvedConfig {
  config: DaemonConfig
  sources: ReadonlyMap<string, string>
}

/** {@link loadConfig}, also saying where each value came from (for messages about it later). */
export function resolveConfig(flags: ConfigFlags, env: NodeJS.ProcessEnv = process.env): ResolvedConfig {
  const sources = new Map<string, string>()
  const merged: Record<string, unknown> = {}
  const take = (obj: Record<string, unknown>, describe: (k: string) => string): void => {
    for (const [k, v] of Object.entries(obj)) {
      if (v === undefined) continue
      merged[k] = v
      sources.set(k, describe(k))
    }
  }
  take(readJson(DEFAULT_CONFIG_FILE, 'config (embedded defaults)'), () => 'default')
  take(BUILTIN as unknown as Record<string, unknown>, () => 'default')
  const file = flags.config ?? env.SHOAL_CONFIG
  if (file !== undefined) {
    const fromFile = readJson(
      resolve(file),
      `config (from ${flags.config !== undefined ? '--config' : 'SHOAL_CONFIG'})`
    )
    take(fromFile, () => `config file ${file}`)
  }
  const fromEnv: Record<string, unknown> = {}
  for (const key of Object.keys(schema.properties)) {
    const raw = env[envName(key)]
    if (raw === undefined || ENV_SKIPPED.has(key)) continue
    fromEnv[key] = coerce(key, raw)
  }
  take(fromEnv, (k) => envName(k))
  // Tokens from SHOAL_API_TOKEN (comma-separated) and --api-token belong to the default tenant.
  const envTokens = env.SHOAL_API_TOKEN?.split(',').filter((t) => t !== '')
  if (envTokens !== undefined && envTokens.length > 0)
    take({ apiTokens: namedTokens(envTokens) }, () => 'SHOAL_API_TOKEN')
  const { config: _file, apiToken, ...rest } = flags
  if (apiToken !== undefined && apiToken.length > 0)
    take({ apiTokens: namedTokens(apiToken) }, () => '--api-token')
  take(rest as Record<string, unknown>, (k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`)

  if (!validate(merged)) {
    const err = (validate.errors ?? [])[0] as ErrorObject
    const field = fieldOf(err)
    const top = field.split(/[.[]/)[0] ?? field
    const from = sources.get(top)
    const got = err.instancePath === '/api' ? ` (got ${JSON.stringify(merged.api)})` : ''
    throw new ShoalError(
      'CONFIG_INVALID',
      `${field}${from !== undefined && from !== 'default' ? ` (from ${from})` : ''}: ${describeError(err)}${got}`
    )
  }
  const config = merged as unknown as DaemonConfig
  const taskDir = dirname(
    file !== undefined && sources.get('tasks') !== 'default' ? resolve(file) : DEFAULT_CONFIG_FILE
  )
  for (const [name, task] of Object.entries(config.tasks)) checkTask(name, task, taskDir)
  const port = Number(/:(\d+)$/.exec(config.api)?.[1])
  if (port > 65535)
    throw new ShoalError('CONFIG_INVALID', `api (from ${sources.get('api')}): port must be 0..65535`)
  if (config.httpHeadersTimeoutMs > config.httpRequestTimeoutMs) {
    throw new ShoalError(
      'CONFIG_INVALID',
      `httpHeadersTimeoutMs${sourceOf('httpHeadersTimeoutMs', sources)}: must not be greater than httpRequestTimeoutMs (${config.httpRequestTimeoutMs})`
    )
  }
  if (config.suspectMs <= config.heartbeatMs) {
    throw new ShoalError('CONFIG_INVALID', 'suspectMs: must be greater than heartbeatMs')
  }
  checkAddresses(config, sources)
  if (config.advertiseApi !== undefined) checkAdvertiseApi(config.advertiseApi, sources)
  checkSecurity(config, sources)
  return { config, sources }
}

/**
 * A task is a command or a module, not both; a module's path is relative to the config file
 * that names it (made absolute here) and must be a file; only commands speak ndjson.
 */
function checkTask(name: string, task: TaskConfig, dir: string): void {
  const fail = (field: string, message: string): never => {
    throw new ShoalError('CONFIG_INVALID', `tasks.${name}${field}: ${message}`)
  }
  if (task.timeoutSeconds !== undefined && !Number.isFinite(task.timeoutSeconds))
    fail('.timeoutSeconds', 'must be a finite number')
  if ((task.command === undefined) === (task.module === undefined))
    fail(
      '',
      'give either "command" (argv) or "module" (a JavaScript or TypeScript file), not both or neither'
    )
  if (task.module !== undefined) {
    if (task.protocol !== undefined)
      fail('.protocol', 'is for command tasks; a module task runs in worker threads')
    if (task.user !== undefined) fail('.user', 'is for command tasks; a module task runs inside the daemon')
    if (taskNetwork(task.network) !== 'host')
      fail('.network', 'is for command tasks; a module task runs inside the daemon, on its network')
    const path = resolve(dir, task.module)
    let isFile = false
    try {
      isFile = statSync(path).isFile()
    } catch (err) {
      fail('.module', `cannot read ${path}: ${describeSystemError(err)}`)
    }
    if (!isFile) fail('.module', `${path} is not a file`)
    task.module = path
  } else {
    for (const key of ['export', 'maxMemoryMb'] as const)
      if (task[key] !== undefined) fail(`.${key}`, 'is for module tasks')
  }
  if (task.minWarm !== undefined && task.maxWarm !== undefined && task.minWarm > task.maxWarm)
    fail('.minWarm', `must not be greater than maxWarm (${task.maxWarm})`)
}

/** ` (from --flag)` for a key that did not come from the defaults, else ''. */
export function sourceOf(key: string, sources: ReadonlyMap<string, string>): string {
  const s = sources.get(key)
  return s !== undefined && s !== 'default' ? ` (from ${s})` : ''
}

/**
 * Parse every multiaddr before anything starts, so a typo is one line naming the flag instead
 * of a libp2p stack trace: listen addresses must be /ip4|ip6/HOST/tcp/PORT (TCP is the only
 * transport), bootstrap addresses must end in /p2p/<peer id> (the bootstrap dials by peer id).
 */
function checkAddresses(config: DaemonConfig, sources: ReadonlyMap<string, string>): void {
  const fail = (key: string, message: string): never => {
    throw new ShoalError('CONFIG_INVALID', `${key}${sourceOf(key, sources)}: ${message}`)
  }
  const parse = (key: string, addr: string, example: string) => {
    try {
      return multiaddr(addr).getComponents()
    } catch (err) {
      return fail(key, `"${addr}" is not a multiaddr (${(err as Error).message}); e.g. ${example}`)
    }
  }
  for (const addr of config.listen) {
    const c = parse('listen', addr, '/ip4/127.0.0.1/tcp/7071')
    if (c.length !== 2 || !/^ip[46]$/.test(c[0]?.name ?? '') || c[1]?.name !== 'tcp') {
      fail('listen', `"${addr}" is not a TCP listen address; e.g. /ip4/127.0.0.1/tcp/7071`)
    }
  }
  for (const addr of config.bootstrap) {
    const c = parse('bootstrap', addr, '/ip4/127.0.0.1/tcp/7071/p2p/<peer id>')
    const id = c.findLast((x) => x.name === 'p2p')?.value
    if (id === undefined) {
      fail(
        'bootstrap',
        `"${addr}" has no /p2p/<peer id>; copy the address from the other daemon's ready line or daemon.json`
      )
    }
    try {
      peerIdFromString(id as string)
    } catch {
      fail('bootstrap', `"${addr}": "${id}" is not a peer id`)
    }
    const tcp = c.find((x) => x.name === 'tcp')
    if (tcp === undefined) {
      fail('bootstrap', `"${addr}" is not a TCP address; e.g. /ip4/127.0.0.1/tcp/7071/p2p/<peer id>`)
    }
  }
}

/** `advertiseApi` is a URL other daemons and people can open: http(s), a host, no more. */
function checkAdvertiseApi(value: string, sources: ReadonlyMap<string, string>): void {
  const fail = (why: string): never => {
    throw new ShoalError(
      'CONFIG_INVALID',
      `advertiseApi${sourceOf('advertiseApi', sources)}: "${value}" ${why}, e.g. http://10.0.0.1:7070`
    )
  }
  const url = URL.canParse(value) ? new URL(value) : fail('is not a URL')
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail('is not an http:// or https:// URL')
  if (['0.0.0.0', '[::]'].includes(url.hostname)) fail('is an address nobody can dial')
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '')
    fail('must be only scheme, host, port and path')
}

/** Is a listen multiaddr or HOST reachable only from this host? */
export function isLoopback(hostOrAddr: string): boolean {
  const m = /^\/(ip4|ip6|dns4|dns6|dns)\/([^/]+)/.exec(hostOrAddr)
  const host = m !== null ? (m[2] as string) : hostOrAddr.replace(/^\[|\]$/g, '')
  return /^127\./.test(host) || host === '::1' || host === 'localhost'
}

const SWARM_KEY_RE = /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-fA-F]{64}\s*$/

/**
 * Secure by default: a daemon reachable beyond this host needs a swarm key (p2p) and API
 * tokens (HTTP), unless the operator says --insecure. Also checks the key file and task users.
 */
function checkSecurity(config: DaemonConfig, sources: Map<string, string>): void {
  const from = (k: string): string => sourceOf(k, sources)
  if (config.swarmKey !== undefined) {
    let text: string
    try {
      text = readFileSync(config.swarmKey, 'utf8')
    } catch (err) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `swarmKey${from('swarmKey')}: cannot read ${config.swarmKey}: ${describeSystemError(err)}`
      )
    }
    if (!SWARM_KEY_RE.test(text)) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `swarmKey${from('swarmKey')}: ${config.swarmKey} is not a swarm key (make one with: shoal keygen --swarm)`
      )
    }
  }
  if (!config.insecure) {
    const open = config.listen.find((a) => !isLoopback(a))
    if (open !== undefined && config.swarmKey === undefined) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `listen${from('listen')}: ${open} is reachable beyond this host; set swarmKey (shoal keygen --swarm) or pass --insecure`
      )
    }
    const host = config.api.replace(/:\d+$/, '')
    if (!isLoopback(host) && Object.keys(config.apiTokens).length === 0) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `api${from('api')}: ${config.api} is reachable beyond this host; set apiTokens (--api-token) or pass --insecure`
      )
    }
  }
  for (const [name, task] of Object.entries(config.tasks)) {
    const net = taskNetwork(task.network)
    if (net === 'host') continue
    // A task asked to be kept off the host's network never runs on it: the daemon refuses to
    // start rather than run it unisolated.
    const fail = (why: string): never => {
      throw new ShoalError('CONFIG_INVALID', `tasks.${name}.network: "${net}" ${why}`)
    }
    if (process.getuid?.() !== 0) fail('needs the daemon to run as root (network namespaces)')
    const tools = net === 'none' ? (['unshare', 'ip', 'setpriv'] as const) : (['nsenter', 'setpriv'] as const)
    for (const tool of tools)
      if (networkTool(tool) === undefined)
        fail(
          `needs ${tool} in /usr/sbin, /usr/bin, /sbin or /bin (${tool === 'ip' ? 'iproute2' : 'util-linux'})`
        )
    if (net !== 'none' && !existsSync(`${NETNS_DIR}/${net}`))
      fail(`is not a network namespace (no ${NETNS_DIR}/${net}; make it with: ip netns add ${net})`)
  }
  for (const [name, task] of Object.entries(config.tasks)) {
    if (task.user === undefined) continue
    if (process.getuid?.() !== 0) {
      throw new ShoalError(
        'CONFIG_INVALID',
        `tasks.${name}.user: dropping privileges needs the daemon to run as root`
      )
    }
    try {
      task.uid = Number(execFileSync('id', ['-u', task.user], { encoding: 'utf8' }).trim())
      task.gid = Number(execFileSync('id', ['-g', task.user], { encoding: 'utf8' }).trim())
    } catch {
      throw new ShoalError('CONFIG_INVALID', `tasks.${name}.user: no such user "${task.user}"`)
    }
  }
}

/** Read a JSON object from `file`; `field` names the setting in messages ("config (from --config)"). */
function readJson(file: string, field: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ShoalError('CONFIG_INVALID', `${field}: cannot read ${file}: ${describeSystemError(err)}`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new ShoalError('CONFIG_INVALID', `${field}: ${file} is not valid JSON: ${(err as Error).message}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ShoalError('CONFIG_INVALID', `${field}: ${file} must hold a JSON object`)
  }
  return value as Record<string, unknown>
}

function coerce(key: string, raw: string): unknown {
  const prop = (schema.properties as Record<string, { type?: string }>)[key]
  switch (prop?.type) {
    case 'integer':
    case 'number':
      return raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw
    case 'boolean':
      return raw === 'true' || raw === '1' ? true : raw === 'false' || raw === '0' ? false : raw
    case 'array':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')
    default:
      return raw
  }
}

function fieldOf(err: ErrorObject): string {
  const path = err.instancePath
    .split('/')
    .slice(1)
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
    .join('')
    .replace(/^\./, '')
  if (err.keyword === 'additionalProperties') {
    const extra = (err.params as { additionalProperty: string }).additionalProperty
    return path === '' ? extra : `${path}.${extra}`
  }
  if (err.keyword === 'required') {
    const missing = (err.params as { missingProperty: string }).missingProperty
    return path === '' ? missing : `${path}.${missing}`
  }
  const named = err.propertyName ?? (err.params as { propertyName?: string }).propertyName
  if (err.keyword === 'propertyNames' || named !== undefined) {
    const name = named ?? ''
    return path === '' ? name : `${path}.${name}`
  }
  return path === '' ? 'config' : path
}

function describeError(err: ErrorObject): string {
  if (err.propertyName !== undefined) return 'is not an allowed name'
  switch (err.keyword) {
    case 'additionalProperties':
      return 'unknown field'
    case 'required':
      return 'is required'
    case 'propertyNames':
      return 'is not an allowed name'
    case 'pattern':
      return err.instancePath === '/api' ? 'must be HOST:PORT, e.g. 127.0.0.1:7070' : 'has the wrong form'
    case 'enum':
      return `must be one of ${(err.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`
    default:
      return err.message ?? 'is invalid'
  }
}
