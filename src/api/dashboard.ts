/**
 * The dashboard: a page served by every daemon at `/`, built from plain ES modules (preact and
 * htm, no bundler). The page and its scripts are public; every call it makes to the API sends
 * the token the operator types in, so the data stays behind the same token as the CLI's.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { basename, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic from '@fastify/static'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { ShoalError } from '../core/errors.ts'
import { doc } from './openapi.ts'

/**
 * The page's own files, in one folder beside this module: found from src/ (run with type
 * stripping) and from a compiled dist/ (the folder copied next to it) alike, whatever the cwd.
 */
export const DASHBOARD_DIR = fileURLToPath(new URL('./dashboard/', import.meta.url))

/** Where the page's files are served from (the page itself is `/`). */
export const ASSET_PREFIX = '/ui/'

/**
 * The front-end library modules the page's import map names, resolved from this package's own
 * dependencies (not the cwd), by the name the page asks for. Only these are served.
 */
function vendorFiles(): Record<string, string> {
  const file = (specifier: string): string => fileURLToPath(import.meta.resolve(specifier))
  return {
    'preact.mjs': file('preact'),
    'hooks.mjs': file('preact/hooks'),
    'htm.mjs': file('htm')
  }
}

/** Is this request for the page or its files (public, no token needed)? */
export function isDashboardPath(url: string): boolean {
  const path = url.split('?')[0] as string
  return path === '/' || path.startsWith(ASSET_PREFIX)
}

/**
 * Headers of every dashboard file. The content security policy lets the page run only its own
 * scripts and the import map inline in index.html (by its hash), and talk only to this daemon.
 */
function securityHeaders(html: string): Record<string, string> {
  const map = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html)?.[1]
  if (map === undefined) throw new Error(`${DASHBOARD_DIR}index.html has no import map`)
  const hash = createHash('sha256').update(map).digest('base64')
  return {
    'content-security-policy': [
      "default-src 'none'",
      `script-src 'self' 'sha256-${hash}'`,
      "style-src 'self'",
      "img-src 'self' data:",
      "connect-src 'self'",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'"
    ].join('; '),
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-cache'
  }
}

/** Serve the dashboard: `/` (the page), `/ui/*` (its scripts and styles), `/ui/vendor/*` (the library). */
export async function registerDashboard(app: FastifyInstance): Promise<void> {
  const headers = securityHeaders(readFileSync(`${DASHBOARD_DIR}index.html`, 'utf8'))
  const vendor = vendorFiles()
  await app.register(fastifyStatic, {
    root: DASHBOARD_DIR,
    prefix: ASSET_PREFIX,
    index: false,
    // One route per file found now: anything else is the API's own 404.
    wildcard: false,
    // Every file this plugin sends, sendFile's included.
    setHeaders: (reply: FastifyReply) => {
      reply.headers(headers)
    }
  })
  app.get(
    '/',
    {
      config: { public: true },
      schema: doc(
        'dashboard',
        'dashboard',
        'The dashboard: a web page over this API (no token needed to load it)',
        {
          200: { description: 'The page', content: { 'text/html': { schema: { type: 'string' } } } }
        }
      )
    },
    (_req, reply) => reply.sendFile('index.html')
  )
  // Like the files @fastify/static serves, the library's files are not in the API document.
  app.get<{ Params: { name: string } }>(
    `${ASSET_PREFIX}vendor/:name`,
    { schema: { hide: true } },
    (req, reply) => {
      const path = vendor[req.params.name]
      if (path === undefined) throw new ShoalError('NOT_FOUND', `no route GET ${req.url.split('?')[0]}`)
      return reply.sendFile(basename(path), dirname(path))
    }
  )
}
