/**
 * npm run bench [-- --only spawn,latency,throughput,warm,rss,failover,sync,load --samples N --fragments N
 *                   --failovers N --sync-fragments N --load-seconds N --json FILE]
 *
 * Real daemons on loopback, default settings. Prints a table and a JSON line:
 * - latency: submit → SUCCEEDED (seen on the accepting daemon) of a one-fragment job, on one
 *   daemon and across three (submitted to A, run on B or C);
 * - throughput: fragments/s of a 2,000-fragment job of a trivial command task, on one daemon
 *   and on three;
 * - failover: kill -9 of a daemon holding running fragments → every orphaned fragment RUNNING
 *   elsewhere (p50/p99 over several kills);
 * - sync: a new daemon joins a daemon holding 10,000 finished fragments → it serves them all;
 * - load: three daemons run CPU-bound tasks flat out; count any peer ever seen not alive;
 * - spawn: the machine's raw limit, `true` spawned from Node as fast as it goes, measured in the
 *   same run: command figures are also given as a ratio to it; beside it, from the same small
 *   process, `true` with three pipes and the daemon's command executor alone (the most a cold
 *   fragment could get without the daemon around it);
 * - warm: module tasks (worker threads) and persistent ndjson workers: throughput on one daemon
 *   and on three, latency of a one-fragment module job, and submit → task code running for a
 *   cold process against a warm thread and a warm worker;
 * - metrics: throughput with every fragment emitting ten metric values against none (module,
 *   command), one daemon;
 * - rss: resident memory of an idle daemon whose pools are at their minimum;
 * - cli: start-up of a client command (`shoal --version`, and `shoal status` against a closed
 *   port) from the sources and from the compiled build (npm run build), beside `node -e 0`.
 * Timing on shared cores is noisy: compare ratios within one run.
 */

import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { ShoalClient } from '../src/cli/client.ts'
import type { JobSpecInput } from '../src/core/spec.ts'
import { Containment } from '../src/worker/cgroup.ts'
import { CommandExecutor } from '../src/worker/command.ts'
import { DaemonProcess, sleep, startMesh, stopAll } from './lib/local-mesh.ts'

const { values } = parseArgs({
  options: {
    only: {
      type: 'string',
      default: 'spawn,cli,latency,throughput,warm,metrics,rss,failover,sync,cancel,overshoot,load'
    },
    samples: { type: 'string', default: '30' },
    fragments: { type: 'string', default: '2000' },
    failovers: { type: 'string', default: '8' },
    'sync-fragments': { type: 'string', default: '10000' },
    'load-seconds': { type: 'string', default: '120' },
    json: { type: 'string' }
  }
})
const ONLY = new Set(values.only.split(','))
const SAMPLES = Number(values.samples)
const FRAGMENTS = Number(values.fragments)
const FAILOVERS = Number(values.failovers)
const SYNC_FRAGMENTS = Number(values['sync-fragments'])
const LOAD_MS = Number(values['load-seconds']) * 1000

const BENCH_TASKS = join(dirname(fileURLToPath(import.meta.url)), 'bench-tasks.mjs')

/** A shell loop printing ten metric lines (a JSON value each). */
const TEN_LINES =
  'i=0; while [ $i -lt 10 ]; do echo "{\\"name\\":\\"rows\\",\\"value\\":$i}"; i=$((i + 1)); done'

const CONFIG = {
  tasks: {
    noop: { command: ['true'] },
    echo: { command: ['cat'] },
    hold: { command: ['sh', '-c', 'if [ "$SHOAL_PEER_ID" = "$SLOW_PEER" ]; then sleep 120; fi; cat'] },
    burn: {
      command: ['sh', '-c', 'end=$(( $(date +%s) + 5 )); while [ "$(date +%s)" -lt "$end" ]; do :; done; cat']
    },
    long: {
      command: ['sh', '-c', 'echo $$ > "$PID_DIR/$SHOAL_FRAGMENT_PATH.$SHOAL_LEASE_EPOCH"; sleep 60; cat']
    },
    nap: { command: ['sh', '-c', 'sleep 0.2; cat'] },
    started: { command: ['sh', '-c', 'date +%s%N'] },
    'mod-noop': { module: BENCH_TASKS, export: 'noop' },
    'mod-emit': { module: BENCH_TASKS, export: 'emit' },
    // The same shell loop, its ten lines to fd 3 (metrics) or to /dev/null (the baseline).
    'cmd-emit': { command: ['sh', '-c', `${TEN_LINES} >&3`] },
    'cmd-quiet': { command: ['sh', '-c', `${TEN_LINES} >/dev/null`] },
    'mod-started': { module: BENCH_TASKS, export: 'started' },
    'nd-noop': { command: [process.execPath, BENCH_TASKS, 'worker'], protocol: 'ndjson' }
  },
  logLevel: 'warn',
  // The bench polls hard from one address: not what the rate limit is for.
  rateLimitPerMinute: 0
}

/** The API client of a daemon. */
const api = (d: DaemonProcess): ShoalClient => new ShoalClient(d.api)

async function submit(d: DaemonProcess, spec: JobSpecInput): Promise<string> {
  return (await api(d).submit(spec)).id
}

async function until<T>(
  fn: () => Promise<T | null | undefined | false>,
  pollMs: number,
  timeoutMs = 600_000
): Promise<T> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v) return v
    if (performance.now() > deadline) throw new Error('bench step timed out')
    await sleep(pollMs)
  }
}

async function runJob(
  d: DaemonProcess,
  spec: JobSpecInput,
  pollMs: number
): Promise<{ id: string; ms: number }> {
  const t0 = performance.now()
  const id = await submit(d, spec)
  await until(async () => {
    const j = await api(d).job(id)
    if (j.state === 'FAILED' || j.state === 'CANCELLED') throw new Error(`job ${id} ended ${j.state}`)
    return j.state === 'SUCCEEDED'
  }, pollMs)
  return { id, ms: performance.now() - t0 }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number
}

async function waitReady(mesh: DaemonProcess[]): Promise<void> {
  await until(async () => {
    const views = await Promise.all(mesh.map((d) => api(d).peers()))
    return views.every((v) => v.filter((p) => p.state === 'alive' && p.synced).length === mesh.length)
  }, 100)
}

async function withMesh<T>(n: number, fn: (mesh: DaemonProcess[]) => Promise<T>): Promise<T> {
  const mesh = await startMesh({ count: n, config: CONFIG })
  try {
    await waitReady(mesh)
    return await fn(mesh)
  } finally {
    await stopAll(mesh)
  }
}

// Ctrl-C or a timeout: exit through process.exit so the daemons started here are killed.
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130))

const results: Record<string, number> = {}
const note = (k: string, v: number): void => {
  results[k] = v
  process.stderr.write(`  ${k} = ${v.toFixed(2)}\n`)
}

/** Runs per second of `one`, a few at a time as the spawn limit is measured, for `n` in all. */
async function rate(n: number, one: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: availableParallelism() * 2 }, async () => {
      while (next++ < n) await one()
    })
  )
  return n / ((performance.now() - t0) / 1000)
}

/** Spawn `true` and wait for its exit, with its stdio as given. */
const spawnTrue = (stdio: 'ignore' | 'pipe'): Promise<void> =>
  new Promise((resolve, reject) => {
    const c = spawn('true', { stdio, detached: stdio === 'pipe' })
    c.on('error', reject)
    c.on('exit', () => resolve())
    c.stdin?.end()
  })

/** A figure beside the spawn limit of this run, as a ratio. */
const vsSpawn = (key: string): void => {
  const spawnPerS = results.spawn_true_per_s
  const v = results[key]
  if (spawnPerS !== undefined && v !== undefined) note(`${key}_vs_spawn`, v / spawnPerS)
}

if (ONLY.has('spawn')) {
  // The machine's raw limit: `true` spawned from this (small) process, no pipes.
  note('spawn_true_per_s', await rate(600, () => spawnTrue('ignore')))
  // What a cold fragment needs beyond that, still from this small process: three pipes (its
  // stdin, stdout, stderr) and its own process group; then the daemon's whole executor (a
  // fresh work dir, the host's containment: a cgroup per run as root). The daemon itself is a
  // far larger process, and fork costs grow with the forking process (decision 015).
  note('spawn_true_piped_per_s', await rate(600, () => spawnTrue('pipe')))
  vsSpawn('spawn_true_piped_per_s')
  const root = mkdtempSync(join(tmpdir(), 'shoal-bench-exec-'))
  try {
    const executor = new CommandExecutor(root, pino({ level: 'silent' }), Containment.detect(root))
    const run = {
      taskName: 'noop',
      task: { command: ['true'] },
      command: ['true'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      items: ['x'],
      lines: ['x'],
      timeoutMs: 60_000,
      killGraceMs: 1000,
      maxOutputBytes: 1024 * 1024,
      inlineOutputBytes: 64 * 1024
    }
    process.stderr.write(`  (the executor below contains its runs by ${executor.containment.kind})\n`)
    note('executor_in_bench_per_s', await rate(600, () => executor.run(run)))
    await executor.settle()
    vsSpawn('executor_in_bench_per_s')
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
}

if (ONLY.has('latency') || ONLY.has('throughput')) {
  for (const n of [1, 3]) {
    await withMesh(n, async (mesh) => {
      const a = mesh[0] as DaemonProcess
      if (ONLY.has('latency')) {
        const lat: number[] = []
        let i = 0
        while (lat.length < SAMPLES) {
          const { id, ms } = await runJob(a, { task: 'echo', items: [`x${i++}`] }, 2)
          if (n > 1) {
            const frags = await api(a).fragments(id)
            if (frags[0]?.peer === a.peerId) continue // ran on A itself: not this measurement
          }
          lat.push(ms)
        }
        const key = n === 1 ? 'latency_1_daemon' : 'latency_3_daemons_elsewhere'
        note(`${key}_p50_ms`, pct(lat, 50))
        note(`${key}_p99_ms`, pct(lat, 99))
      }
      if (ONLY.has('throughput')) {
        const { ms } = await runJob(
          a,
          { task: 'noop', range: { start: 0, end: FRAGMENTS }, fragmentSize: 1 },
          50
        )
        note(`throughput_${n}_daemon${n > 1 ? 's' : ''}_fragments_per_s`, FRAGMENTS / (ms / 1000))
      }
    })
  }
  if (results.throughput_1_daemon_fragments_per_s !== undefined) {
    note(
      'throughput_ratio_3_vs_1',
      (results.throughput_3_daemons_fragments_per_s as number) / results.throughput_1_daemon_fragments_per_s
    )
    vsSpawn('throughput_1_daemon_fragments_per_s')
    vsSpawn('throughput_3_daemons_fragments_per_s')
  }
}

/** Submit → the task's code running, ms: the task prints when it ran (ms since the epoch). */
async function startDelays(d: DaemonProcess, task: string, samples: number): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < samples; i++) {
    const t0 = performance.timeOrigin + performance.now()
    const { id } = await runJob(d, { task, items: ['started'] }, 2)
    const text = (await api(d).output(id)).text.trim()
    // date +%s%N is in ns; the module and the worker print ms.
    const ranAt = Number(text) > 1e15 ? Number(text) / 1e6 : Number(text)
    out.push(ranAt - t0)
  }
  return out
}

/** Resident memory of a process, MB (from /proc). */
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1] ?? Number.NaN) / 1024
}

if (ONLY.has('cli')) {
  // Median wall time of a command, run one at a time, ten times.
  const wall = async (argv: string[]): Promise<number> => {
    const times: number[] = []
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now()
      await new Promise<void>((resolve) =>
        spawn(argv[0] as string, argv.slice(1), { stdio: 'ignore' }).on('exit', () => resolve())
      )
      times.push(performance.now() - t0)
    }
    return (times.sort((a, b) => a - b)[5] as number) / 1000
  }
  const root = join(dirname(fileURLToPath(import.meta.url)), '..')
  const node = process.execPath
  const baseline = await wall([node, '-e', '0'])
  note('node_start_s', baseline)
  const built = join(root, 'dist', 'main.js')
  for (const [kind, main] of [
    ['source', join(root, 'src', 'main.ts')],
    ['compiled', built]
  ] as const) {
    if (kind === 'compiled' && !readdirSync(join(root)).includes('dist')) continue
    for (const [what, args] of [
      ['version', ['--version']],
      ['status', ['status', 'x', '--api', 'http://127.0.0.1:9']]
    ] as const) {
      const s = await wall([node, main, ...args])
      note(`cli_${what}_${kind}_s`, s)
      note(`cli_${what}_${kind}_vs_node_start`, s / baseline)
    }
  }
}

if (ONLY.has('rss')) {
  // An idle daemon with its pools at their minimum (one module thread; the ndjson worker is a
  // process of its own), after start-up settled: the daemon process alone.
  await withMesh(1, async ([a]) => {
    const d = a as DaemonProcess
    await sleep(5000)
    const pid = d.child?.pid
    if (pid !== undefined) note('idle_daemon_rss_mb', rssMb(pid))
  })
}

if (ONLY.has('metrics')) {
  // Throughput with every fragment emitting ten metric values against the same task emitting
  // none, one daemon, alternated five times (best of each), for a module task and a cold command.
  await withMesh(1, async ([d]) => {
    const a = d as DaemonProcess
    for (const [base, emitting, kind, n] of [
      ['mod-noop', 'mod-emit', 'module', FRAGMENTS],
      ['cmd-quiet', 'cmd-emit', 'command', Math.ceil(FRAGMENTS / 8)]
    ] as const) {
      await runJob(a, { task: base, range: { start: 0, end: 50 }, fragmentSize: 1 }, 20)
      await runJob(a, { task: emitting, range: { start: 0, end: 50 }, fragmentSize: 1 }, 20)
      const best = { [base]: 0, [emitting]: 0 }
      for (let round = 0; round < 5; round++) {
        for (const task of [base, emitting]) {
          const { ms } = await runJob(a, { task, range: { start: 0, end: n }, fragmentSize: 1 }, 20)
          best[task] = Math.max(best[task] ?? 0, n / (ms / 1000))
        }
      }
      note(`${kind}_fragments_per_s_without_metrics`, best[base] as number)
      note(`${kind}_fragments_per_s_emitting_10_metrics`, best[emitting] as number)
      note(`${kind}_metrics_vs_without`, (best[emitting] as number) / (best[base] as number))
    }
  })
}

if (ONLY.has('warm')) {
  for (const n of [1, 3]) {
    await withMesh(n, async (mesh) => {
      const a = mesh[0] as DaemonProcess
      const suffix = n === 1 ? '1_daemon' : '3_daemons'
      for (const [task, kind] of [
        ['mod-noop', 'module'],
        ['nd-noop', 'ndjson']
      ] as const) {
        // Warm up (threads and workers start), then time a whole job.
        await runJob(a, { task, range: { start: 0, end: 50 }, fragmentSize: 1 }, 20)
        const { ms } = await runJob(a, { task, range: { start: 0, end: FRAGMENTS }, fragmentSize: 1 }, 20)
        note(`${kind}_throughput_${suffix}_fragments_per_s`, FRAGMENTS / (ms / 1000))
        vsSpawn(`${kind}_throughput_${suffix}_fragments_per_s`)
      }
      const lat: number[] = []
      for (let i = 0; i < SAMPLES; i++) lat.push((await runJob(a, { task: 'mod-noop', items: [i] }, 1)).ms)
      note(`module_latency_${suffix}_p50_ms`, pct(lat, 50))
      note(`module_latency_${suffix}_p99_ms`, pct(lat, 99))
      if (n === 1) {
        const cold = await startDelays(a, 'started', SAMPLES)
        const warm = await startDelays(a, 'mod-started', SAMPLES)
        note('start_cold_command_p50_ms', pct(cold, 50))
        note('start_warm_module_p50_ms', pct(warm, 50))
        note('start_warm_vs_cold', pct(warm, 50) / pct(cold, 50))
      }
    })
  }
}

if (ONLY.has('failover')) {
  // kill -9 of a daemon holding running fragments → every orphan RUNNING elsewhere.
  await withMesh(3, async (mesh) => {
    const [a] = mesh as [DaemonProcess]
    const times: number[] = []
    for (let k = 0; k < FAILOVERS; k++) {
      const victim = mesh[1 + (k % 2)] as DaemonProcess
      const id = await submit(a, {
        task: 'hold',
        // 24 fragments: the victim ranks first for some of them (all but surely: 1 - (2/3)^24).
        range: { start: 0, end: 24 },
        fragmentSize: 1,
        env: { SLOW_PEER: victim.peerId }
      })
      const held = await until(async () => {
        const fs = await api(a).fragments(id)
        const mine = fs.filter((f) => f.peer === victim.peerId && f.state === 'RUNNING')
        return mine.length > 0 && fs.filter((f) => f.state === 'RUNNABLE').length === 0 ? mine : null
      }, 20)
      const t0 = performance.now()
      victim.kill('SIGKILL')
      await until(async () => {
        const fs = await api(a).fragments(id)
        return held.every((h) => {
          const f = fs.find((x) => x.path === h.path)
          return f !== undefined && f.peer !== victim.peerId && f.epoch > h.epoch
        })
      }, 10)
      times.push(performance.now() - t0)
      await victim.waitExit()
      await victim.start()
      await waitReady(mesh)
    }
    note('failover_p50_ms', pct(times, 50))
    note('failover_p99_ms', pct(times, 99))
  })
}

if (ONLY.has('sync')) {
  // A daemon holding SYNC_FRAGMENTS finished fragments; a newcomer joins and must serve them.
  await withMesh(1, async ([a]) => {
    const holder = a as DaemonProcess
    const { id } = await runJob(
      holder,
      { task: 'noop', range: { start: 0, end: SYNC_FRAGMENTS }, fragmentSize: 1 },
      200
    )
    const late = new DaemonProcess({ name: 'late', config: CONFIG, bootstrap: [holder.addr] })
    try {
      const t0 = performance.now()
      await late.start()
      await until(async () => {
        const j = await api(late)
          .job(id)
          .catch(() => null)
        return j !== null && j.statusSummary.SUCCEEDED === SYNC_FRAGMENTS
      }, 10)
      note('sync_new_daemon_ms_incl_start', performance.now() - t0)
    } finally {
      await stopAll([late])
    }
  })
}

if (ONLY.has('cancel')) {
  // Time from the cancel request to the last task process gone, over three daemons.
  const pidDir = mkdtempSync(join(tmpdir(), 'shoal-bench-cancel-'))
  try {
    await withMesh(3, async (mesh) => {
      const [a] = mesh as [DaemonProcess]
      const times: number[] = []
      for (let k = 0; k < 5; k++) {
        const id = await submit(a, {
          task: 'long',
          range: { start: 0, end: 12 },
          fragmentSize: 1,
          env: { PID_DIR: pidDir }
        })
        const pids = await until(async () => {
          const files = readdirSync(pidDir)
          return files.length >= 12 ? files.map((f) => Number(readFileSync(join(pidDir, f), 'utf8'))) : null
        }, 20)
        const t0 = performance.now()
        await api(a).cancel(id)
        await until(async () => pids.every((pid) => !isAlive(pid)), 2)
        times.push(performance.now() - t0)
        for (const f of readdirSync(pidDir)) rmSync(join(pidDir, f))
      }
      note('cancel_to_last_process_gone_p50_ms', pct(times, 50))
      note('cancel_to_last_process_gone_max_ms', Math.max(...times))
    })
  } finally {
    rmSync(pidDir, { recursive: true, force: true })
  }
}

if (ONLY.has('overshoot')) {
  // maxConcurrency under churn: a daemon is killed and restarted every 2 s while a capped job
  // runs; the largest excess any daemon saw (its metric) and any sample of /fragments showed.
  await withMesh(4, async (mesh) => {
    const [a] = mesh as [DaemonProcess]
    const cap = 4
    const id = await submit(a, {
      task: 'nap',
      range: { start: 0, end: 300 },
      fragmentSize: 1,
      maxConcurrency: cap
    })
    let sampled = 0
    let churns = 0
    let lastChurn = performance.now()
    for (;;) {
      const frags = await api(a).fragments(id)
      sampled = Math.max(sampled, frags.filter((f) => f.state === 'RUNNING').length - cap)
      if (performance.now() - lastChurn > 2000) {
        const victim = mesh[1 + (churns % 3)] as DaemonProcess
        victim.kill('SIGKILL')
        await victim.waitExit()
        await victim.start()
        churns++
        lastChurn = performance.now()
      }
      const j = await api(a).job(id)
      if (j.state === 'SUCCEEDED') break
      await sleep(20)
    }
    let metric = 0
    for (const d of mesh) {
      const m = /shoal_max_concurrency_overshoot (\d+)/.exec(await (await fetch(`${d.api}/metrics`)).text())
      metric = Math.max(metric, Number(m?.[1] ?? 0))
    }
    note('overshoot_churns', churns)
    note('overshoot_max_sampled', Math.max(0, sampled))
    note('overshoot_max_metric', metric)
  })
}

if (ONLY.has('load')) {
  // CPU flat out on every daemon (tasks busy-loop); nobody may be seen as anything but alive.
  await withMesh(3, async (mesh) => {
    const [a] = mesh as [DaemonProcess]
    const end = performance.now() + LOAD_MS
    let samples = 0
    let notAlive = 0
    let jobs = 0
    while (performance.now() < end) {
      const id = await submit(a, { task: 'burn', range: { start: 0, end: 24 }, fragmentSize: 1 })
      jobs++
      for (;;) {
        for (const d of mesh) {
          const peers = await api(d).peers()
          samples++
          notAlive += peers.filter((p) => p.state !== 'alive').length
        }
        const j = await api(a).job(id)
        if (j.state === 'SUCCEEDED' || performance.now() > end) break
        await sleep(100)
      }
    }
    note('load_seconds', LOAD_MS / 1000)
    note('load_peer_view_samples', samples)
    note('load_false_suspicions', notAlive)
    note('load_jobs', jobs)
  })
}

const rows = Object.entries(results).map(
  ([k, v]) => `${k.padEnd(44)} ${v.toFixed(k.includes('ratio') ? 2 : 1).padStart(10)}`
)
process.stdout.write(
  `\nShoal benchmark\n${'metric'.padEnd(44)} ${'value'.padStart(10)}\n${rows.join('\n')}\n\n`
)
const json = JSON.stringify({ bench: 'shoal', samples: SAMPLES, fragments: FRAGMENTS, results })
process.stdout.write(`${json}\n`)
if (values.json !== undefined) writeFileSync(values.json, `${json}\n`)
