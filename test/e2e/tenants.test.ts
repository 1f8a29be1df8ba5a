import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { ShoalClient } from '../../src/cli/client.ts'
import { apiError, TEST_CONFIG } from './helpers.ts'

const TOKENS = {
  teamA: 'token-of-team-a-0123456789',
  teamB: 'token-of-team-b-0123456789',
  teamC: 'token-of-team-c-0123456789',
  ops: 'token-of-ops-0123456789ab'
}
const CONFIG = {
  ...TEST_CONFIG,
  apiTokens: TOKENS,
  tenants: {
    teamA: { maxActiveJobs: 2, maxItemsPerJob: 100 },
    teamC: { maxActiveJobs: 2 },
    ops: { admin: true }
  }
}

describe('tenants see only their own work', () => {
  let mesh: DaemonProcess[] = []
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
  })

  it('another tenant’s job answers 404 on every route and is missing from the list; an admin sees all; quotas at submit answer 429 and store nothing', async () => {
    mesh = await startMesh({ count: 2, config: CONFIG })
    const [d1, d2] = mesh as [DaemonProcess, DaemonProcess]
    const as = (d: DaemonProcess, tenant: keyof typeof TOKENS) =>
      new ShoalClient(d.api, { token: TOKENS[tenant] })
    await waitUntil(
      'the mesh',
      async () => (await as(d1, 'ops').peers()).filter((p) => p.state === 'alive').length === 2
    )
    const a = await as(d1, 'teamA').submit({ task: 'echo', items: ['a'] })
    const b = await as(d2, 'teamB').submit({ task: 'long', items: ['b'], env: { PID_DIR: '/tmp' } })
    expect([a.tenant, b.tenant]).toEqual(['teamA', 'teamB'])
    // Known everywhere (replicated), yet to team A, B's job does not exist, from either daemon.
    await waitUntil('b on d1', async () => (await as(d1, 'ops').jobs()).some((j) => j.id === b.id))
    for (const d of mesh) {
      const ca = as(d, 'teamA')
      for (const call of [
        () => ca.job(b.id),
        () => ca.fragments(b.id),
        () => ca.output(b.id),
        () => ca.failures(b.id),
        () => ca.metrics(b.id),
        () => ca.cancel(b.id),
        () => ca.deleteJob(b.id),
        () => ca.retry(b.id),
        () => ca.tryLog(b.id, '0'),
        async () => {
          for await (const _ of ca.events(b.id)) break
        }
      ]) {
        const err = await apiError(call())
        expect([err.status, err.code]).toEqual([404, 'JOB_NOT_FOUND'])
      }
      expect((await ca.jobs()).map((j) => j.id)).toEqual([a.id])
      expect((await as(d, 'teamB').jobs()).map((j) => j.id)).toEqual([b.id])
      const all = (await as(d, 'ops').jobs()).map((j) => j.id).sort()
      expect(all).toEqual([a.id, b.id].sort())
      expect((await as(d, 'ops').job(b.id)).tenant).toBe('teamB')
    }
    expect((await as(d1, 'teamB').job(b.id)).state).not.toBe('CANCELLED')
    // An admin may delete any tenant's finished job; to its own tenant it is then gone (410).
    await waitUntil('a to succeed', async () => (await as(d1, 'teamA').job(a.id)).state === 'SUCCEEDED')
    expect((await as(d2, 'ops').deleteJob(a.id)).tenant).toBe('teamA')
    const deleted = await apiError(as(d1, 'teamA').job(a.id))
    expect([deleted.status, deleted.code]).toEqual([410, 'JOB_DELETED'])
    expect((await apiError(as(d1, 'teamB').job(a.id))).status).toBe(404)

    // Quotas of team A: at most 100 items per job, at most 2 jobs not yet finished.
    const big = await apiError(as(d1, 'teamA').submit({ task: 'echo', range: { start: 0, end: 101 } }))
    expect([big.status, big.code, big.message]).toEqual([
      429,
      'QUOTA_EXCEEDED',
      expect.stringMatching(/items: 101 items .*maxItemsPerJob \(100\)/)
    ])
    const l1 = await as(d1, 'teamA').submit({ task: 'long', items: ['1'], env: { PID_DIR: '/tmp' } })
    const l2 = await as(d1, 'teamA').submit({ task: 'long', items: ['2'], env: { PID_DIR: '/tmp' } })
    const third = await apiError(as(d1, 'teamA').submit({ task: 'echo', items: ['3'] }))
    expect([third.status, third.code, third.message]).toEqual([
      429,
      'QUOTA_EXCEEDED',
      expect.stringMatching(/maxActiveJobs/)
    ])
    expect((await as(d1, 'teamA').jobs()).map((j) => j.id).sort()).toEqual([l1.id, l2.id].sort()) // nothing stored
    // Team B has no limits; once one of A's jobs ends, A may submit again.
    await as(d2, 'teamB').submit({ task: 'echo', range: { start: 0, end: 500 } })
    await as(d1, 'teamA').cancel(l1.id)
    const again = await as(d1, 'teamA').submit({ task: 'echo', items: ['3'] })
    expect(again.tenant).toBe('teamA')
    for (const id of [l2.id, b.id]) await as(d1, 'ops').cancel(id) // an admin may cancel any job
  })

  it('submits at once do not all pass one count; a retry is within the quota too; /metrics shows a tenant only its own jobs', async () => {
    mesh = await startMesh({ count: 1, config: CONFIG })
    const d = mesh[0] as DaemonProcess
    const as = (tenant: keyof typeof TOKENS) => new ShoalClient(d.api, { token: TOKENS[tenant] })
    const long = { task: 'long', items: ['x'], env: { PID_DIR: '/tmp' } }
    const answers = await Promise.allSettled(Array.from({ length: 8 }, () => as('teamC').submit(long)))
    const accepted = answers
      .filter((a) => a.status === 'fulfilled')
      .map((a) => (a as PromiseFulfilledResult<{ id: string }>).value.id)
    expect(accepted).toHaveLength(2)
    expect((await as('teamC').jobs()).map((j) => j.id).sort()).toEqual([...accepted].sort())
    // Cancel both, start two more: a retry of a cancelled one would be a third active job.
    for (const id of accepted) await as('teamC').cancel(id)
    await as('teamC').submit(long)
    await as('teamC').submit(long)
    const retry = await apiError(as('teamC').retry(accepted[0] as string))
    expect([retry.status, retry.code]).toEqual([429, 'QUOTA_EXCEEDED'])

    const b = await as('teamB').submit({ task: 'echo', items: ['b'] })
    await waitUntil('b done and measured', async () => {
      const text = await (
        await fetch(`${d.api}/metrics`, { headers: { authorization: `Bearer ${TOKENS.ops}` } })
      ).text()
      return text.includes(`job="${b.id}"`)
    })
    const seenByA = await (
      await fetch(`${d.api}/metrics`, { headers: { authorization: `Bearer ${TOKENS.teamA}` } })
    ).text()
    expect(seenByA).not.toContain(b.id)
    expect(seenByA).toContain('shoal_fragment_tries_total') // the daemon's own series stay
    const seenByB = await (
      await fetch(`${d.api}/metrics`, { headers: { authorization: `Bearer ${TOKENS.teamB}` } })
    ).text()
    expect(seenByB).toContain(`job="${b.id}"`)
    for (const j of await as('ops').jobs())
      if (j.state === 'RUNNING' || j.state === 'RUNNABLE') await as('ops').cancel(j.id)
  })

  it('schedules are per tenant: one name for two tenants, invisible to each other; an admin names the tenant', async () => {
    mesh = await startMesh({ count: 1, config: CONFIG })
    const d = mesh[0] as DaemonProcess
    const as = (tenant: keyof typeof TOKENS) => new ShoalClient(d.api, { token: TOKENS[tenant] })
    const nightly = (task: string) => ({
      name: 'nightly',
      cron: '0 3 * * *',
      timezone: 'UTC',
      template: { task, items: ['x'] }
    })
    await as('teamA').putSchedule(nightly('echo'))
    await as('teamB').putSchedule(nightly('noop'))
    expect((await as('teamA').schedule('nightly')).template.task).toBe('echo')
    expect((await as('teamB').schedule('nightly')).template.task).toBe('noop')
    expect((await as('teamA').schedules()).map((x) => [x.name, x.tenant])).toEqual([['nightly', 'teamA']])
    expect((await as('ops').schedules()).map((x) => x.tenant).sort()).toEqual(['teamA', 'teamB'])
    // Team B naming team A's schedule: it does not exist, whatever the verb.
    for (const call of [
      () => as('teamB').schedule('nightly', 'teamA'),
      () => as('teamB').pauseSchedule('nightly', 'teamA'),
      () => as('teamB').resumeSchedule('nightly', 'teamA'),
      () => as('teamB').deleteSchedule('nightly', 'teamA')
    ]) {
      const err = await apiError(call())
      expect([err.status, err.code]).toEqual([404, 'SCHEDULE_NOT_FOUND'])
    }
    // A tenant may name itself; the admin names team A's and acts on it.
    expect((await as('teamA').schedule('nightly', 'teamA')).tenant).toBe('teamA')
    expect((await as('ops').pauseSchedule('nightly', 'teamA')).paused).toBe(true)
    expect((await as('teamA').schedule('nightly')).paused).toBe(true)
    expect((await as('teamB').schedule('nightly')).paused).toBe(false)
    await as('ops').deleteSchedule('nightly', 'teamB')
    expect((await apiError(as('teamB').schedule('nightly'))).status).toBe(404)
    expect((await as('teamA').schedule('nightly')).name).toBe('nightly')
    const bad = await apiError(as('ops').schedule('nightly', 'no such/tenant'))
    expect([bad.status, bad.code, bad.message]).toEqual([
      400,
      'INVALID_SPEC',
      expect.stringMatching(/tenant/)
    ])
  })
})
