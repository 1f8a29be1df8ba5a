/**
 * npm run profile [-- --task mod-noop|mod-emit|nd-noop|noop --fragments N --top N]
 *
 * Where a daemon's time goes: one daemon on loopback under `node --cpu-prof`, a warm-up job,
 * then one job of N one-item fragments of the task; the daemon is stopped (SIGTERM, so the
 * profile is written) and its main thread's samples are summed by source file and by function
 * (self time, idle included). The profile file is kept for Chrome DevTools or speedscope.
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { ShoalClient } from '../src/cli/client.ts'
import { DaemonProcess, ROOT, sleep, stopAll } from './lib/local-mesh.ts'

const { values } = parseArgs({
  options: {
    task: { type: 'string', default: 'mod-noop' },
    fragments: { type: 'string', default: '20000' },
    top: { type: 'string', default: '25' }
  }
})
const FRAGMENTS = Number(values.fragments)
const TOP = Number(values.top)
const TASKS = join(dirname(fileURLToPath(import.meta.url)), 'bench-tasks.mjs')
const tasks: Record<string, unknown> = {
  noop: { command: ['true'] },
  'mod-noop': { module: TASKS, export: 'noop' },
  'mod-emit': { module: TASKS, export: 'emit' },
  'nd-noop': { command: [process.execPath, TASKS, 'worker'], protocol: 'ndjson' }
}
if (tasks[values.task] === undefined) {
  process.stderr.write(`--task: one of ${Object.keys(tasks).join(', ')}\n`)
  process.exit(2)
}
if (!Number.isInteger(FRAGMENTS) || FRAGMENTS < 1) {
  process.stderr.write('--fragments: a positive integer\n')
  process.exit(2)
}

const profDir = mkdtempSync(join(tmpdir(), 'shoal-profile-'))
const daemon = new DaemonProcess({
  name: 'profiled',
  config: { tasks, logLevel: 'warn', rateLimitPerMinute: 0 },
  env: { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${profDir}` }
})
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130))

async function job(api: ShoalClient, n: number): Promise<number> {
  const t0 = performance.now()
  const { id } = await api.submit({ task: values.task, range: { start: 0, end: n }, fragmentSize: 1 })
  for (;;) {
    const j = await api.job(id)
    if (j.state === 'SUCCEEDED') return performance.now() - t0
    if (j.state === 'FAILED' || j.state === 'CANCELLED') throw new Error(`job ${id} ended ${j.state}`)
    await sleep(20)
  }
}

let ms: number
try {
  await daemon.start()
  const api = new ShoalClient(daemon.api)
  await job(api, 200)
  ms = await job(api, FRAGMENTS)
} finally {
  // SIGTERM: the profile is written as the daemon exits (a SIGKILL would lose it).
  await daemon.stop(30_000)
  await stopAll([daemon])
}

interface Profile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>
  samples: number[]
  timeDeltas: number[]
}
// The main thread's profile is the first the daemon's process wrote (worker threads follow).
const file = readdirSync(profDir)
  .filter((f) => f.endsWith('.cpuprofile'))
  .sort()[0]
if (file === undefined) throw new Error(`no profile was written to ${profDir}`)
const profile = JSON.parse(readFileSync(join(profDir, file), 'utf8')) as Profile
const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]))
const byFile = new Map<string, number>()
const byFn = new Map<string, number>()
let total = 0
profile.samples.forEach((id, i) => {
  const us = profile.timeDeltas[i] ?? 0
  const cf = byId.get(id)
  if (cf === undefined) return
  total += us
  const url = cf.url.replace(`file://${ROOT}/`, '').replace(/^.*node_modules\/((@[^/]+\/)?[^/]+).*$/, '$1')
  const where = url === '' ? cf.functionName : url
  byFile.set(where, (byFile.get(where) ?? 0) + us)
  const fn = `${cf.functionName || '(anonymous)'} ${url}${url === '' ? '' : `:${cf.lineNumber + 1}`}`
  byFn.set(fn, (byFn.get(fn) ?? 0) + us)
})
const table = (m: Map<string, number>): string =>
  [...m]
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP)
    .map(
      ([k, us]) =>
        `${(us / 1000).toFixed(0).padStart(8)} ms ${((100 * us) / total).toFixed(1).padStart(5)} %  ${k}`
    )
    .join('\n')
process.stdout.write(
  `${FRAGMENTS} fragments of ${values.task} in ${(ms / 1000).toFixed(2)} s: ${((FRAGMENTS * 1000) / ms).toFixed(0)} fragments/s\n` +
    `main thread ${(total / 1e6).toFixed(2)} s sampled (start-up and idle included); profile: ${join(profDir, file)}\n\n` +
    `by file or package (self time)\n${table(byFile)}\n\nby function (self time)\n${table(byFn)}\n`
)
