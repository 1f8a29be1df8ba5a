import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, sleep, startMesh, stopAll } from '../../scripts/lib/local-mesh.ts'
import { client, peers, submit, TEST_CONFIG, waitMeshReady, waitState } from './helpers.ts'

/**
 * Red-team reproduction (see test/unit/core/metrics-register-size.test.ts): a task whose tries
 * emit 64 series of four values at the far ends of the doubles made each daemon's register of
 * the job 2.8 MB, rewritten and gossiped at each flush. Measured on two shared cores, 120 one-item
 * fragments on three daemons: 24-33 s (6 s with the same count of ordinary values), /v1/health up
 * to 2.6 s, peers seen suspect, 156-175 tries counted for 120 fragments. With the register's
 * sketches fitted (fitSketches): 5.6 s against 4.2 s, health at worst 254 ms, none suspect, 120.
 * Logs the figures; asserts the counts (timing is left to the log).
 */
const wide = (spread: boolean) => `
let out = ''
for (let s = 0; s < 64; s++)
  for (const v of ${spread ? '[1e-300, 1e300, -1e-300, -1e300]' : '[1, 2, 3, 4]'})
    out += JSON.stringify({ name: 'w', value: v, labels: { s: String(s) } }) + '\\n'
require('node:fs').writeSync(3, out)
process.stdout.write('x')
`
const CONFIG = {
  ...TEST_CONFIG,
  tasks: {
    ...TEST_CONFIG.tasks,
    wide: { command: ['node', '-e', wide(true)] },
    narrow: { command: ['node', '-e', wide(false)] }
  }
}

async function run(
  mesh: DaemonProcess[],
  task: string
): Promise<{ tookMs: number; worstHealthMs: number; notAlive: number; triesCounted: number }> {
  const a = mesh[0] as DaemonProcess
  let worst = 0
  let stop = false
  let notAlive = 0
  const poll = (async () => {
    while (!stop) {
      for (const d of mesh) {
        const t = performance.now()
        await fetch(`${d.api}/v1/health`).catch(() => undefined)
        worst = Math.max(worst, performance.now() - t)
        notAlive += (await peers(d.api).catch(() => [])).filter((p) => p.state !== 'alive').length
      }
      await sleep(200)
    }
  })()
  const started = performance.now()
  const j = await submit(a.api, { task, range: { start: 0, end: 120 }, fragmentSize: 1 })
  await waitState(a.api, j.id, 'SUCCEEDED', 180_000)
  const tookMs = Math.round(performance.now() - started)
  await sleep(3000)
  stop = true
  await poll
  const m = await client(a.api).metrics(j.id)
  const tries = m.metrics.filter((s) => s.name === 'shoal_tries').reduce((n, s) => n + s.count, 0)
  const figures = { tookMs, worstHealthMs: Math.round(worst), notAlive, triesCounted: tries }
  console.log(task, figures)
  return figures
}

describe('a metric register made huge by a few wide values (a red-team reproduction)', () => {
  let mesh: DaemonProcess[] = []
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
  })

  it('120 fragments, 256 values a try: ordinary values, then values at the far ends of the doubles', async () => {
    mesh = await startMesh({ count: 3, config: CONFIG })
    await waitMeshReady(mesh.map((d) => d.api))
    const narrow = await run(mesh, 'narrow')
    const wide = await run(mesh, 'wide')
    // Before the register's sketches were fitted: peers seen suspect (27-30 samples) and fragments
    // run twice with both tries counted (156-175 for 120). Now as with ordinary values.
    expect([narrow.notAlive, wide.notAlive]).toEqual([0, 0])
    expect([narrow.triesCounted, wide.triesCounted]).toEqual([120, 120])
  }, 600_000)
})
