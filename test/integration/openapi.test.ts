import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import pino from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FAST } from '../../scripts/lib/local-mesh.ts'
import { ASSET_PREFIX } from '../../src/api/dashboard.ts'
import { buildApp } from '../../src/api/server.ts'
import { ShoalClient } from '../../src/cli/client.ts'
import { loadConfig } from '../../src/daemon/config.ts'
import { Daemon } from '../../src/daemon/daemon.ts'
import { type OpenApiDocument, operationOf, schemaValidator } from './openapi-doc.ts'

const ROOT = join(import.meta.dirname, '..', '..')
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'] as const

/**
 * The app of a daemon with every route it can have (tokens, rate limit and the test-only
 * routes on), built over a real Daemon that is never started: the document needs only its config.
 */
async function app(): Promise<{ app: FastifyInstance; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-openapi-'))
  const config = loadConfig(
    {
      dataDir: dir,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      api: '127.0.0.1:0',
      ...FAST,
      apiTokens: { ops: 'openapi-test-token-0123456789' },
      rateLimitPerMinute: 100,
      testHooks: true
    } as never,
    {}
  )
  const a = await buildApp(new Daemon(config, pino({ level: 'silent' })), {
    bodyLimitBytes: 1024 * 1024,
    logger: pino({ level: 'silent' })
  })
  await a.ready()
  return { app: a, dir }
}

/**
 * Every route the server registers, from fastify's own route table (`printRoutes`): a tree
 * whose lines are `├── /segment (GET, HEAD)`, four columns deeper per level. HEAD routes that
 * fastify adds beside each GET are left out, as the document leaves them out.
 */
function registeredRoutes(a: FastifyInstance): Array<{ method: string; url: string }> {
  const routes: Array<{ method: string; url: string }> = []
  const stack: string[] = []
  for (const line of a.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│ ]*)[├└]── (\S+)(?: \(([A-Z, ]+)\))?$/.exec(line.replace(/\u00a0/g, ' '))
    if (m === null) continue
    const depth = (m[1] as string).length / 4
    stack.length = depth
    stack.push(m[2] as string)
    const methods = (m[3] ?? '').split(', ').filter((x) => x !== '')
    for (const method of methods) {
      if (method === 'HEAD' && methods.includes('GET')) continue
      routes.push({ method, url: stack.join('') })
    }
  }
  return routes
}

/** `/v1/jobs/:id` as the document writes it: `/v1/jobs/{id}`. */
const docPath = (url: string): string => url.replace(/:(\w+)/g, '{$1}')

describe('the API document (GET /openapi.json)', () => {
  let a: FastifyInstance
  let dir: string
  let doc: OpenApiDocument
  beforeAll(async () => {
    ;({ app: a, dir } = await app())
    const res = await a.inject({ method: 'GET', url: '/openapi.json' })
    expect(res.statusCode).toBe(200)
    doc = res.json()
  })
  afterAll(async () => {
    await a?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('passes `redocly lint` (redocly.yaml) with no error and no warning', async () => {
    const file = join(dir, 'openapi.json')
    writeFileSync(file, JSON.stringify(doc))
    const cli = join(ROOT, 'node_modules', '@redocly', 'cli', 'bin', 'cli.js')
    const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(
        process.execPath,
        [cli, 'lint', file, '--config', join(ROOT, 'redocly.yaml'), '--format', 'json'],
        {
          cwd: dir,
          // Offline: no usage data, no update check.
          env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
          maxBuffer: 16 * 1024 * 1024
        },
        (err, stdout, stderr) => resolve({ code: err === null ? 0 : Number(err.code ?? 1), stdout, stderr })
      )
    )
    const report = JSON.parse(run.stdout) as {
      totals: { errors: number; warnings: number }
      problems: Array<{ ruleId: string; message: string; location: Array<{ pointer: string }> }>
    }
    const problems = report.problems.map((p) => `${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`)
    expect(problems).toEqual([])
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 })
    expect(run.code).toBe(0)
  })

  it('has every route the server registers, and none it does not', () => {
    const all = registeredRoutes(a)
    // The dashboard's files (scripts, styles, its library) are not API: @fastify/static hides
    // its routes, and the library's route is hidden alike. The page itself, `/`, is in.
    const files = all.filter((r) => r.url.startsWith(ASSET_PREFIX))
    expect(files.length).toBeGreaterThan(0)
    expect(Object.keys(doc.paths).filter((p) => p.startsWith(ASSET_PREFIX))).toEqual([])
    const routes = all.filter((r) => !r.url.startsWith(ASSET_PREFIX))
    // The parse found the table: the routes every daemon has are there.
    expect(routes).toContainEqual({ method: 'POST', url: '/v1/jobs' })
    expect(routes).toContainEqual({ method: 'GET', url: '/v1/jobs/:id/fragments/:path/log' })
    expect(routes).toContainEqual({ method: 'GET', url: '/openapi.json' })
    const missing = routes.filter(
      (r) => doc.paths[docPath(r.url)]?.[r.method.toLowerCase() as (typeof METHODS)[number]] === undefined
    )
    expect(missing).toEqual([])

    const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
      METHODS.filter((m) => item[m] !== undefined).map((m) => ({ method: m.toUpperCase(), path }))
    )
    const ghosts = documented.filter(
      (o) => !a.hasRoute({ method: o.method as 'GET', url: o.path.replace(/\{(\w+)\}/g, ':$1') })
    )
    expect(ghosts).toEqual([])
    expect(documented.length).toBe(routes.length)
  })

  it('says which routes need a token: all but the health check, the document and the dashboard page', () => {
    expect(doc.security).toEqual([{ bearer: [] }])
    expect(doc.components.securitySchemes).toMatchObject({ bearer: { type: 'http', scheme: 'bearer' } })
    const open = Object.entries(doc.paths).flatMap(([path, item]) =>
      METHODS.filter((m) => item[m]?.security?.length === 0).map((m) => `${m.toUpperCase()} ${path}`)
    )
    expect(open.sort()).toEqual(['GET /', 'GET /openapi.json', 'GET /v1/health'])
  })

  it('has every path, method, query parameter and body the typed client (ShoalClient) sends', async () => {
    // Every method of the client, with arguments that use each of its options.
    const calls: Record<string, unknown[]> = {
      submit: [{ task: 'echo', items: ['a'], fragmentSize: 1 }],
      jobs: ['RUNNING', { schedule: 'nightly' }],
      putSchedule: [{ name: 'nightly', cron: '0 3 * * *', template: { task: 'echo', items: ['a'] } }],
      schedules: [],
      schedule: ['nightly', 'ops'],
      pauseSchedule: ['nightly', 'ops'],
      resumeSchedule: ['nightly', 'ops'],
      deleteSchedule: ['nightly', 'ops'],
      job: ['J1'],
      fragments: ['J1'],
      output: ['J1'],
      outputStream: ['J1'],
      cancel: ['J1'],
      deleteJob: ['J1'],
      retry: ['J1'],
      tryLog: ['J1', '0.1', 2],
      metrics: ['J1'],
      failures: ['J1'],
      peers: [],
      drain: ['12D3KooWpeer'],
      undrain: [],
      tasks: [],
      health: [],
      partition: [['12D3KooWpeer']],
      // The recorder's answer is not an event stream: it ends at once, and the client gives up.
      events: ['J1', { reconnects: 0 }]
    }
    const methods = Object.getOwnPropertyNames(ShoalClient.prototype).filter(
      (m) => !['constructor', 'request', 'json'].includes(m)
    )
    // A method added to the client must be added here (and so checked against the document).
    expect(Object.keys(calls).sort()).toEqual(methods.sort())

    // A loopback server that records each request and answers an empty object.
    const seen: Array<{ client: string; method: string; url: string; body: string }> = []
    let current = ''
    const server = createServer((req: IncomingMessage, res) => {
      let body = ''
      req.on('data', (c: Buffer) => {
        body += c.toString()
      })
      req.on('end', () => {
        seen.push({ client: current, method: req.method ?? '', url: req.url ?? '', body })
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const client = new ShoalClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, {
        token: 't'
      })
      for (const [name, args] of Object.entries(calls)) {
        current = name
        const fn = (client as unknown as Record<string, (...a: unknown[]) => unknown>)[name] as (
          ...a: unknown[]
        ) => unknown
        const result = fn.apply(client, args)
        if (result !== null && typeof result === 'object' && Symbol.asyncIterator in result) {
          await expect(
            (async () => {
              for await (const _ of result as AsyncIterable<unknown>) {
                // drain
              }
            })()
          ).rejects.toThrow(/ended before the job did/)
        } else {
          const r = await result
          const stream = (r as { body?: unknown } | undefined)?.body
          if (stream instanceof ReadableStream) await stream.cancel()
        }
      }
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }

    expect(new Set(seen.map((s) => s.client)).size).toBe(Object.keys(calls).length)
    const validator = schemaValidator(doc)
    const problems: string[] = []
    for (const s of seen) {
      const url = new URL(s.url, 'http://x')
      const found = operationOf(doc, s.method, url.pathname)
      if (found === undefined) {
        problems.push(`${s.client}: ${s.method} ${url.pathname} is not in the document`)
        continue
      }
      const { operation, pointer } = found
      const queryNames = (operation.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name)
      for (const q of url.searchParams.keys()) {
        if (!queryNames.includes(q)) problems.push(`${s.client}: query ${q} is not documented`)
      }
      if (s.body !== '') {
        if (operation.requestBody === undefined) {
          problems.push(`${s.client}: sends a body the document does not take`)
          continue
        }
        const errors = validator(
          `${pointer}/requestBody/content/application~1json/schema`,
          JSON.parse(s.body)
        )
        if (errors !== null) problems.push(`${s.client}: body ${errors}`)
      }
    }
    expect(problems).toEqual([])
  })
})
