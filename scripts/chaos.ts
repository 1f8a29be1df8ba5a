/**
 * npm run chaos [-- --seed N --fragments 1000 --kill-seconds 30 --partition-seconds 10 --json FILE]
 *
 * Five real daemons on loopback run a job of 1,000+ fragments (and small jobs submitted along
 * the way) while a seeded schedule kill -9s a random daemon every few seconds and restarts it,
 * then splits the mesh in two (through the daemons' test-only partition switch) and heals it.
 * Prints a report: acknowledged jobs, lost jobs (must be 0), fragments without exactly one
 * recorded result (must be 0), executions per fragment, time to converge after the heal, and
 * whether all five state digests match. Exit code 1 when an invariant fails.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ShoalClient } from '../src/cli/client.ts'
import type { FragmentRecord } from '../src/core/api.ts'
import type { JobSpecInput } from '../src/core/spec.ts'
import { DaemonProcess, sleep, stopAll } from './lib/local-mesh.ts'

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: String(Date.now() % 100000) },
    fragments: { type: 'string', default: '1000' },
    'kill-seconds': { type: 'string', default: '30' },
    'partition-seconds': { type: 'string', default: '10' },
    json: { type: 'string' },
    verbose: { type: 'boolean', default: false }
  }
})
const SEED = Number(values.seed)
const FRAGMENTS = Number(values.fragments)
const KILL_MS = Number(values['kill-seconds']) * 1000
const PARTITION_MS = Number(values['partition-seconds']) * 1000

/** mulberry32: the chaos schedule replays for a seed (timing on real processes still varies). */
function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
const random = rng(SEED)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T
const log = (msg: string): void => {
  process.stdout.write(`[${new Date().toISOString().slice(11, 23)}] ${msg}\n`)
}

const work = mkdtempSync(join(tmpdir(), 'shoal-chaos-'))
const execLog = join(work, 'executions.log')
writeFileSync(execLog, '')
const CONFIG = {
  heartbeatMs: 200,
  suspectMs: 1000,
  syncIntervalMs: 1000,
  stealDelayMs: 500,
  tickMs: 50,
  killGraceMs: 500,
  shutdownGraceMs: 1000,
  capacity: 4,
  testHooks: true,
  rateLimitPerMinute: 0,
  logLevel: 'warn',
  tasks: {
    work: {
      command: [
        'sh',
        '-c',
        'echo "$SHOAL_JOB_ID $SHOAL_FRAGMENT_PATH $SHOAL_LEASE_EPOCH" >> "$EXEC_LOG"; sleep 0.05; cat'
      ]
    }
  }
}

const daemons = Array.from(
  { length: 5 },
  (_, i) => new DaemonProcess({ name: `c${i + 1}`, config: CONFIG, logTo: join(work, `c${i + 1}.log`) })
)
const up = new Set<DaemonProcess>()
const acknowledged = new Map<string, number>() // job id → items
let failures = 0

async function start(d: DaemonProcess): Promise<void> {
  const others = [...up].filter((o) => o !== d && o.info !== undefined)
  d.options.bootstrap = others.map((o) => o.addr)
  await d.start()
  up.add(d)
}

/** The API client of a daemon. */
const api = (d: DaemonProcess): ShoalClient => new ShoalClient(d.api)

async function submitTo(d: DaemonProcess, spec: JobSpecInput): Promise<void> {
  try {
    const job = await api(d).submit(spec)
    acknowledged.set(job.id, job.items)
    log(`job ${job.id} acknowledged by ${d.name} (replicas ${job.replicas}, ${job.items} items)`)
  } catch (err) {
    log(`submit to ${d.name} failed: ${(err as Error).message} (not acknowledged)`)
  }
}

async function partition(groups: DaemonProcess[][]): Promise<void> {
  for (const g of groups) {
    const others = groups.filter((x) => x !== g).flat()
    for (const d of g) {
      await api(d).partition(others.map((o) => o.peerId))
    }
  }
}

async function converged(): Promise<{ ok: boolean; digests: string[] }> {
  const digests: string[] = []
  for (const d of daemons) {
    const h = await api(d).health()
    digests.push(h.stateDigest)
    for (const id of acknowledged.keys()) {
      const j = await api(d)
        .job(id)
        .catch(() => ({ state: 'MISSING' }))
      if (j.state !== 'SUCCEEDED' && j.state !== 'FAILED') return { ok: false, digests }
    }
  }
  return { ok: digests.every((x) => x === digests[0]), digests }
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130))

const report: Record<string, unknown> = { seed: SEED, fragments: FRAGMENTS }
try {
  log(`seed ${SEED}; work dir ${work}`)
  await start(daemons[0] as DaemonProcess)
  await Promise.all(daemons.slice(1).map((d) => start(d)))
  log('five daemons up')
  await sleep(2000)
  await submitTo(daemons[0] as DaemonProcess, {
    task: 'work',
    range: { start: 0, end: FRAGMENTS },
    fragmentSize: 1,
    env: { EXEC_LOG: execLog }
  })

  // Phase 1: kill -9 a random daemon every few seconds and bring it back.
  const killEnd = Date.now() + KILL_MS
  let kills = 0
  while (Date.now() < killEnd) {
    await sleep(2000 + random() * 2000)
    const victim = pick([...up])
    up.delete(victim)
    victim.kill('SIGKILL')
    await victim.waitExit()
    kills++
    log(`kill -9 ${victim.name}`)
    await submitTo(pick([...up]), {
      task: 'work',
      range: { start: 0, end: 20 },
      fragmentSize: 2,
      env: { EXEC_LOG: execLog }
    })
    await sleep(500 + random() * 1500)
    await start(victim)
    log(`${victim.name} restarted`)
  }
  report.kills = kills

  // Phase 2: a partition into two sides, then a heal.
  const shuffled = [...daemons].sort(() => random() - 0.5)
  const sides = [shuffled.slice(0, 2), shuffled.slice(2)]
  log(`partition: ${sides.map((s) => s.map((d) => d.name).join(',')).join(' | ')}`)
  await partition(sides)
  await submitTo(pick(sides[0] as DaemonProcess[]), {
    task: 'work',
    range: { start: 0, end: 20 },
    env: { EXEC_LOG: execLog }
  })
  await submitTo(pick(sides[1] as DaemonProcess[]), {
    task: 'work',
    range: { start: 0, end: 20 },
    env: { EXEC_LOG: execLog }
  })
  await sleep(PARTITION_MS)
  await partition([daemons])
  const healedAt = Date.now()
  log('healed')

  let result = await converged()
  while (!result.ok && Date.now() - healedAt < 180_000) {
    await sleep(250)
    result = await converged()
  }
  report.convergeAfterHealMs = Date.now() - healedAt
  report.digestsMatch = result.digests.every((x) => x === result.digests[0])

  // Invariants, checked on every daemon.
  let lost = 0
  let notExactlyOne = 0
  let leaves = 0
  for (const [id] of acknowledged) {
    const views: FragmentRecord[][] = []
    for (const d of daemons) {
      try {
        views.push(await api(d).fragments(id))
      } catch {
        lost++
        break
      }
    }
    if (views.length < daemons.length) continue
    const first = views[0] as FragmentRecord[]
    leaves += first.length
    for (const [i, f] of first.entries()) {
      const agree = views.every((v) => {
        const g = v[i]
        return (
          g !== undefined &&
          g.path === f.path &&
          g.state === f.state &&
          g.epoch === f.epoch &&
          g.peer === f.peer
        )
      })
      if (!agree || f.state !== 'SUCCEEDED') notExactlyOne++
    }
  }
  const counts = new Map<string, number>()
  for (const line of readFileSync(execLog, 'utf8').split('\n')) {
    if (line === '') continue
    const [job, path] = line.split(' ')
    counts.set(`${job} ${path}`, (counts.get(`${job} ${path}`) ?? 0) + 1)
  }
  const executions = [...counts.values()]
  report.acknowledgedJobs = acknowledged.size
  report.lostJobs = lost
  report.leafFragments = leaves
  report.fragmentsWithoutExactlyOneResult = notExactlyOne
  report.executions = executions.reduce((a, b) => a + b, 0)
  report.fragmentsExecutedMoreThanOnce = executions.filter((n) => n > 1).length
  report.maxExecutionsPerFragment = Math.max(0, ...executions)
  report.executionsPerFragment = Number((report.executions as number) / Math.max(1, counts.size)).toFixed(3)
  failures = lost + notExactlyOne + (report.digestsMatch === true ? 0 : 1)
} catch (err) {
  log(`chaos run failed: ${(err as Error).stack}`)
  failures++
} finally {
  await stopAll(daemons, { keepData: false })
  // Task processes of killed daemons run on briefly; they only append to the log.
  if (!values.verbose && existsSync(work)) rmSync(work, { recursive: true, force: true })
}

process.stdout.write('\nChaos report\n')
for (const [k, v] of Object.entries(report)) process.stdout.write(`  ${k.padEnd(34)} ${String(v)}\n`)
process.stdout.write(`${JSON.stringify({ chaos: 'shoal', ok: failures === 0, ...report })}\n`)
if (values.json !== undefined) writeFileSync(values.json, `${JSON.stringify(report)}\n`)
process.exit(failures === 0 ? 0 : 1)
