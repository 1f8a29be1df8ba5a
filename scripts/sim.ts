/**
 * npm run sim -- --seeds N --daemons M [--start-seed S] [--jobs J] [--fragments F] [--fault-ms T]
 *                [--settle-ms T] [--no-faults] [--sticky-finished] [--bug NAME]... [--verbose]
 * npm run sim -- --seed S --daemons M [...]          (replay one seed; --verbose traces it)
 *
 * Runs the deterministic simulator (src/sim) over a range of seeds: the daemon's own engine on
 * virtual hosts over a fake network with crashes, pauses, partitions and message loss, then
 * healing and checking the invariants. Prints every failing seed with the command that replays it, a
 * summary table and a JSON line. Exit code 1 when any seed fails.
 *
 * --sticky-finished plants the scheduler's old bug through its test-only seam (a job once seen
 * terminal was never scanned again); --bug injects a deliberate bug (lower-top:N, reuse-incarnation, corrupt-replica,
 * drop-acked-job) so a failing test run can be replayed here.
 */
import { parseArgs } from 'node:util'
import {
  DEFAULTS,
  runSimulation,
  type SimBugs,
  type SimOptions,
  type SimResult,
  type SimStats
} from '../src/sim/index.ts'

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '100' },
    'start-seed': { type: 'string', default: '1' },
    seed: { type: 'string' },
    daemons: { type: 'string', default: '10' },
    jobs: { type: 'string' },
    fragments: { type: 'string' },
    'fault-ms': { type: 'string' },
    'settle-ms': { type: 'string' },
    'no-faults': { type: 'boolean', default: false },
    'sticky-finished': { type: 'boolean', default: false },
    bug: { type: 'string', multiple: true, default: [] },
    verbose: { type: 'boolean', short: 'v', default: false }
  }
})

function int(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < min) {
    console.error(`sim: --${name} must be an integer >= ${min} (got ${v})`)
    process.exit(2)
  }
  return n
}

const single = int('seed', values.seed, 0)
const first = single ?? (int('start-seed', values['start-seed'], 0) as number)
const count = single !== undefined ? 1 : (int('seeds', values.seeds, 1) as number)
const base: Omit<SimOptions, 'seed'> = { daemons: int('daemons', values.daemons, 1) as number }
const jobs = int('jobs', values.jobs, 1)
const fragments = int('fragments', values.fragments, 1)
const faultMs = int('fault-ms', values['fault-ms'], 0)
const settleMs = int('settle-ms', values['settle-ms'], 1000)
if (jobs !== undefined) base.jobs = jobs
if (fragments !== undefined) base.fragments = fragments
if (faultMs !== undefined) base.faultMs = faultMs
if (settleMs !== undefined) base.settleLimitMs = settleMs
if (values['no-faults']) base.faults = false
if (values['sticky-finished']) base.stickyFinished = true
const bugs: SimBugs = {}
for (const b of values.bug) {
  const [name, arg] = b.split(':')
  if (name === 'lower-top') bugs.lowerTopAtMerge = int('bug lower-top', arg, 1) ?? 1
  else if (name === 'reuse-incarnation') bugs.reuseIncarnation = true
  else if (name === 'corrupt-replica') bugs.corruptReplica = true
  else if (name === 'drop-acked-job') bugs.dropAckedJob = true
  else {
    console.error(`sim: unknown --bug ${b} (lower-top:N, reuse-incarnation, corrupt-replica, drop-acked-job)`)
    process.exit(2)
  }
}
if (Object.keys(bugs).length > 0) base.bugs = bugs
const traceOne = single !== undefined && values.verbose

const summed: Array<keyof SimStats> = [
  'virtualMs',
  'convergeMs',
  'events',
  'messagesSent',
  'messagesDropped',
  'messagesDuplicated',
  'jobsSubmitted',
  'jobsAcknowledged',
  'jobsSucceeded',
  'jobsFailed',
  'jobsCancelled',
  'jobsCompacted',
  'jobsDeleted',
  'retries',
  'disksFull',
  'startsRefused',
  'jobsRefusedStorage',
  'specConflicts',
  'leafFragments',
  'claims',
  'runs',
  'abortedRuns',
  'executions',
  'duplicateExecutions',
  'hostLostReclaims',
  'falseHostLost',
  'capOvershoot',
  'tenantOvershoot',
  'drains',
  'hostLostFailures',
  'fencedRefusals',
  'crashes',
  'restarts',
  'pauses',
  'partitions',
  'leaves',
  'permanentLosses',
  'lostUnsyncedWrites',
  'outputBlobs',
  'blobCopies',
  'scheduledJobs',
  'steadyTicks'
]
const totals = new Map<keyof SimStats, { sum: number; max: number; n: number }>()
const failures: SimResult[] = []
const t0 = performance.now()

for (let seed = first; seed < first + count; seed++) {
  const opts: SimOptions = { ...base, seed }
  if (traceOne) opts.trace = (line) => console.log(line)
  const started = performance.now()
  const r = await runSimulation(opts)
  const ms = performance.now() - started
  for (const k of summed) {
    const v = r.stats[k]
    if (typeof v !== 'number') continue
    const t = totals.get(k) ?? { sum: 0, max: 0, n: 0 }
    t.sum += v
    t.max = Math.max(t.max, v)
    t.n++
    totals.set(k, t)
  }
  if (values.verbose && !traceOne) {
    console.log(
      `seed ${seed}: ${r.ok ? 'ok' : 'FAIL'} ${ms.toFixed(0)}ms wall, converged in ${r.stats.convergeMs ?? '-'}ms virtual, digest ${r.digest}`
    )
  }
  if (!r.ok) {
    failures.push(r)
    console.log(`FAIL seed ${seed} (${r.violations.length} violations)`)
    for (const v of r.violations.slice(0, 8)) {
      console.log(`  ${v.kind} at ${v.at}ms${v.daemon !== undefined ? ` on ${v.daemon}` : ''}: ${v.detail}`)
    }
    console.log(`  replay: ${r.replay}`)
  }
  if (single !== undefined) {
    console.log(`digest ${r.digest}`)
    console.log(JSON.stringify({ seed, stats: r.stats }))
  }
}

const wallMs = performance.now() - t0
const passed = count - failures.length
const pad = (s: string, n: number): string => s.padStart(n)
const fmt = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(1))
console.log('')
console.log(
  `shoal sim: seeds ${first}..${first + count - 1}, ${base.daemons} daemons, jobs <= ${base.jobs ?? DEFAULTS.jobs}, ` +
    `fragments <= ${base.fragments ?? DEFAULTS.fragments}${base.faults === false ? ', no faults' : ''}`
)
console.log(`${'seeds'.padEnd(22)}${pad(String(count), 14)}`)
console.log(`${'passed'.padEnd(22)}${pad(String(passed), 14)}`)
console.log(`${'failed'.padEnd(22)}${pad(String(failures.length), 14)}`)
console.log(
  `${'wall time'.padEnd(22)}${pad(`${(wallMs / 1000).toFixed(1)} s`, 14)}  (${(wallMs / count).toFixed(0)} ms/seed)`
)
// Gossip load: messages each daemon sent per virtual second, over the whole run.
const sentTotal = totals.get('messagesSent')?.sum ?? 0
const virtualTotal = totals.get('virtualMs')?.sum ?? 0
const msgsPerDaemonSecond =
  virtualTotal > 0 ? sentTotal / (base.daemons as number) / (virtualTotal / 1000) : 0
console.log(
  `${'msgs/daemon/s'.padEnd(22)}${pad(msgsPerDaemonSecond.toFixed(1), 14)}  (sent per daemon per virtual second)`
)
console.log(`${''.padEnd(22)}${pad('total', 14)}${pad('mean', 14)}${pad('max', 14)}`)
for (const k of summed) {
  const t = totals.get(k)
  if (t === undefined) continue
  console.log(
    `${k.padEnd(22)}${pad(fmt(t.sum), 14)}${pad(fmt(t.sum / Math.max(1, t.n)), 14)}${pad(fmt(t.max), 14)}`
  )
}
for (const f of failures.slice(0, 20)) console.log(`failing seed ${f.seed}: ${f.replay}`)

const json: Record<string, unknown> = {
  seeds: count,
  startSeed: first,
  daemons: base.daemons,
  passed,
  failed: failures.length,
  wallMs: Math.round(wallMs),
  msgsPerDaemonSecond: Number(msgsPerDaemonSecond.toFixed(1)),
  failing: failures.map((f) => ({
    seed: f.seed,
    replay: f.replay,
    kinds: [...new Set(f.violations.map((v) => v.kind))]
  }))
}
for (const k of summed) {
  const t = totals.get(k)
  if (t !== undefined)
    json[k] = { total: t.sum, mean: Number((t.sum / Math.max(1, t.n)).toFixed(2)), max: t.max }
}
console.log(JSON.stringify(json))
process.exit(failures.length > 0 ? 1 : 0)
