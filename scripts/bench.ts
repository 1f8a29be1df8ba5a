/**
 * npm run bench [-- --samples N --fragments N --json FILE]
 *
 * Real daemons on loopback, default settings. Prints a table and a JSON line:
 * - latency: submit → SUCCEEDED (seen on the accepting daemon) of a one-fragment job, on one
 *   daemon and across three (submitted to A, run on B or C);
 * - throughput: fragments/s of a 2,000-fragment job of a trivial command task, on one daemon
 *   and on three.
 * Timing on shared cores is noisy: compare ratios within one run.
 */
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { type DaemonProcess, getJson, postJson, sleep, startMesh, stopAll } from './lib/local-mesh.ts'

const { values } = parseArgs({
  options: {
    samples: { type: 'string', default: '30' },
    fragments: { type: 'string', default: '2000' },
    json: { type: 'string' }
  }
})
const SAMPLES = Number(values.samples)
const FRAGMENTS = Number(values.fragments)

const CONFIG = {
  tasks: { noop: { command: ['true'] }, echo: { command: ['cat'] } },
  logLevel: 'warn'
}

interface Job {
  id: string
  state: string
}

async function runJob(
  submitTo: DaemonProcess,
  spec: unknown,
  pollMs: number
): Promise<{ id: string; ms: number }> {
  const t0 = performance.now()
  const res = await postJson<Job>(submitTo.api, '/v1/jobs', spec)
  if (res.status !== 202) throw new Error(`submit failed: ${res.status} ${JSON.stringify(res.body)}`)
  for (;;) {
    const j = await getJson<Job>(submitTo.api, `/v1/jobs/${res.body.id}`)
    if (j.state === 'SUCCEEDED') return { id: res.body.id, ms: performance.now() - t0 }
    if (j.state === 'FAILED' || j.state === 'CANCELLED') throw new Error(`job ${j.id} ended ${j.state}`)
    await sleep(pollMs)
  }
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number
}

async function waitMeshReady(mesh: DaemonProcess[]): Promise<void> {
  for (;;) {
    const views = await Promise.all(
      mesh.map((d) => getJson<Array<{ state: string; synced: boolean }>>(d.api, '/v1/peers'))
    )
    if (views.every((v) => v.filter((p) => p.state === 'alive' && p.synced).length === mesh.length)) return
    await sleep(100)
  }
}

async function latency(mesh: DaemonProcess[], elsewhere: boolean): Promise<number[]> {
  const [a] = mesh as [DaemonProcess]
  const out: number[] = []
  let i = 0
  while (out.length < SAMPLES) {
    const { id, ms } = await runJob(a, { task: 'echo', items: [`x${i++}`] }, 2)
    if (elsewhere) {
      const frags = await getJson<Array<{ peer: string }>>(a.api, `/v1/jobs/${id}/fragments`)
      if (frags[0]?.peer === a.peerId) continue // ran on A itself: not this measurement
    }
    out.push(ms)
  }
  return out
}

async function throughput(mesh: DaemonProcess[]): Promise<number> {
  const { ms } = await runJob(
    mesh[0] as DaemonProcess,
    { task: 'noop', range: { start: 0, end: FRAGMENTS }, fragmentSize: 1 },
    50
  )
  return FRAGMENTS / (ms / 1000)
}

const results: Record<string, number> = {}
for (const n of [1, 3]) {
  const mesh = await startMesh({ count: n, config: CONFIG })
  try {
    await waitMeshReady(mesh)
    const lat = await latency(mesh, n > 1)
    const key = n === 1 ? 'latency_1_daemon' : 'latency_3_daemons_elsewhere'
    results[`${key}_p50_ms`] = pct(lat, 50)
    results[`${key}_p99_ms`] = pct(lat, 99)
    results[`throughput_${n}_daemon${n > 1 ? 's' : ''}_fragments_per_s`] = await throughput(mesh)
  } finally {
    await stopAll(mesh)
  }
}
results.throughput_ratio_3_vs_1 =
  (results.throughput_3_daemons_fragments_per_s as number) /
  (results.throughput_1_daemon_fragments_per_s as number)

const rows = Object.entries(results).map(
  ([k, v]) => `${k.padEnd(44)} ${v.toFixed(k.includes('ratio') ? 2 : 1).padStart(10)}`
)
process.stdout.write(
  `\nShoal benchmark (samples ${SAMPLES}, ${FRAGMENTS} fragments)\n${'metric'.padEnd(44)} ${'value'.padStart(10)}\n${rows.join('\n')}\n\n`
)
const json = JSON.stringify({ bench: 'shoal', samples: SAMPLES, fragments: FRAGMENTS, results })
process.stdout.write(`${json}\n`)
if (values.json !== undefined) writeFileSync(values.json, `${json}\n`)
