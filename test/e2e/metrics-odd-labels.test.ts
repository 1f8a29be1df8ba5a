import { execFileSync } from 'node:child_process'
import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { client, submit, TEST_CONFIG, waitMeshReady, waitState } from './helpers.ts'

// Odd values (-0, 1e-300, 5e-324, -1e300) and odd label values (a quote, a newline, a backslash,
// `=` and `,`, emoji, a lone surrogate, 256 characters), and a label named __proto__ (dropped).
const ODD = `
const lines = [
  { name: 'odd', value: -0, labels: { q: 'a"b' } },
  { name: 'odd', value: 1e-300, labels: { nl: 'x\\ny' } },
  { name: 'odd', value: -5, labels: { bs: 'a\\\\b', eq: 'c=d,e' } },
  { name: 'odd', value: 5e-324, labels: { u: 'ünï😀' } },
  { name: 'odd', value: 1, labels: { lone: '\\ud800x' } },
  { name: 'a.b:c', value: 3, labels: { long: 'v'.repeat(256) } },
  { name: 'neg', value: -1e300 },
  { name: 'neg', value: -1e-300 },
]
let out = lines.map((l) => JSON.stringify(l)).join('\\n') + '\\n'
out += '{"name":"proto","value":7,"labels":{"__proto__":"p"}}\\n'
require('node:fs').writeSync(3, out)
process.stdout.write('ok')
`
const CONFIG = { ...TEST_CONFIG, tasks: { ...TEST_CONFIG.tasks, odd: { command: ['node', '-e', ODD] } } }

describe('task metrics with odd values and labels (a red-team review)', () => {
  let mesh: DaemonProcess[] = []
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
  })

  it('the API answers them, /metrics passes promtool, a label named __proto__ is dropped and counted', async () => {
    mesh = await startMesh({ count: 1, config: CONFIG })
    const a = mesh[0] as DaemonProcess
    await waitMeshReady([a.api])
    const j = await submit(a.api, { task: 'odd', items: ['x'] })
    await waitState(a.api, j.id, 'SUCCEEDED')
    const m = await waitUntil(
      'the values to count',
      async () => {
        const got = await client(a.api).metrics(j.id)
        return got.metrics.some((s) => s.name === 'neg') ? got : undefined
      },
      10_000
    )
    expect(m.dropped).toBe(1)
    expect(m.metrics.filter((s) => s.name === 'odd')).toHaveLength(5)
    expect(m.metrics.find((s) => s.name === 'neg')).toMatchObject({ count: 2, min: -1e300, max: -1e-300 })
    const text = await (await fetch(`${a.api}/metrics`)).text()
    expect(text).toContain('labels="nl=x\\ny"')
    // promtool exits non-zero (execFileSync throws) on anything wrong.
    execFileSync('/usr/bin/promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
  })
})
