import { execFileSync, spawnSync } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DaemonProcess, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { ShoalClient } from '../../src/cli/client.ts'
import { TEST_CONFIG } from './helpers.ts'

/** promtool (Debian's `prometheus`; .ci/run installs it), or undefined when this machine has none. */
const promtool =
  spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).stdout.trim() || undefined

const TOKENS = { teamA: 'token-of-team-a-0123456789', ops: 'token-of-ops-0123456789ab' }
const CONFIG = {
  ...TEST_CONFIG,
  capacity: 2,
  apiTokens: TOKENS,
  tenants: { teamA: { weight: 2 }, ops: { admin: true } },
  tasks: {
    ...TEST_CONFIG.tasks,
    // One task metric per fragment on fd 3, then its item.
    emit: { command: ['sh', '-c', 'read n; echo "{\\"name\\":\\"rows\\",\\"value\\":$n}" >&3; echo "$n"'] },
    hold: { command: ['sh', '-c', 'sleep 30; cat'] }
  }
}

/** `promtool check metrics` on a text: its exit code and what it said. */
function check(text: string): { code: number; said: string } {
  const r = spawnSync(promtool as string, ['check', 'metrics'], { input: text, encoding: 'utf8' })
  return { code: r.status ?? -1, said: `${r.stdout}${r.stderr}` }
}

describe.skipIf(promtool === undefined)('/metrics passes promtool', () => {
  const d = new DaemonProcess({ name: 'prom', config: CONFIG })
  const as = (tenant: keyof typeof TOKENS) => new ShoalClient(d.api, { token: TOKENS[tenant] })
  const scrape = async (tenant: keyof typeof TOKENS): Promise<string> =>
    (await fetch(`${d.api}/metrics`, { headers: { authorization: `Bearer ${TOKENS[tenant]}` } })).text()

  beforeAll(async () => {
    await d.start()
  })
  afterAll(async () => {
    await stopAll([d])
  })

  it('with jobs run, task metrics, tenants and work queued: promtool finds nothing, for an admin and a tenant', async () => {
    const a = as('teamA')
    const done = await a.submit({ task: 'emit', range: { start: 0, end: 6 }, fragmentSize: 1 })
    await a.submit({ task: 'fail', items: ['x'], attempts: 1 })
    await waitUntil('emit done', async () => (await a.job(done.id)).state === 'SUCCEEDED')
    // Five fragments of `hold` on a daemon of capacity 2: 2 running, 3 queued.
    const held = await as('ops').submit({ task: 'hold', items: [1, 2, 3, 4, 5], fragmentSize: 1 })
    const admin = await waitUntil('task metrics and the queue in /metrics', async () => {
      const text = await scrape('ops')
      return text.includes(`shoal_task_metric_values{job="${done.id}",task="emit",metric="rows"`) &&
        /^shoal_mesh_running_fragments\{task="hold"\} 2$/m.test(text)
        ? text
        : undefined
    })
    expect(admin).toMatch(/^shoal_mesh_queued_fragments\{task="hold"\} 3$/m)
    expect(admin).toMatch(/^shoal_mesh_queued_fragments\{task="echo"\} 0$/m)
    expect(admin).toMatch(/^shoal_jobs\{state="CANCELLED"\} 0$/m)
    expect(admin).toMatch(/^shoal_tenant_running_fragments\{tenant="teamA"\} 0$/m)
    expect(admin).toMatch(/^shoal_build_info\{version="\d+\.\d+\.\d+",node="v\d+/m)
    expect(admin).toMatch(/^process_cpu_seconds_total \d/m)
    expect(check(admin)).toEqual({ code: 0, said: '' })
    // A tenant's view (other tenants' series filtered out) is well formed too.
    const tenant = await scrape('teamA')
    expect(tenant).not.toContain('tenant="ops"')
    expect(check(tenant)).toEqual({ code: 0, said: '' })
    await as('ops').cancel(held.id)
  })

  it('promtool does fail on a gauge named like a counter (the check can fail)', () => {
    const bad = '# HELP x_total A gauge\n# TYPE x_total gauge\nx_total 1\n'
    expect(check(bad).code).not.toBe(0)
    expect(execFileSync(promtool as string, ['--version'], { encoding: 'utf8' })).toMatch(/promtool/)
  })
})
