import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type DaemonProcess, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import {
  client,
  fragments,
  job,
  lines,
  shoal,
  submit,
  TEST_CONFIG,
  waitMeshReady,
  waitState
} from './helpers.ts'

/**
 * Jobs with failing items (issue 10): a failed fragment does not stop the others, failures are
 * listed with their items and stderr, a retry runs them again, failFast stops the rest, and
 * bisect narrows a failure down to its bad items.
 */
const CONFIG = {
  ...TEST_CONFIG,
  retryBackoffMs: 50,
  tasks: {
    ...TEST_CONFIG.tasks,
    // Echoes its items; an item starting with "bad" fails the fragment (exit 3, one stderr
    // line naming it) unless the file the job names in FIX_FLAG exists.
    picky: {
      command: [
        'sh',
        '-c',
        'while IFS= read -r x; do case "$x" in bad*) if [ ! -e "$FIX_FLAG" ]; then echo "warming up" >&2; echo "attempt $SHOAL_ATTEMPT: cannot handle $x" >&2; exit 3; fi;; esac; echo "$x"; done'
      ]
    },
    // As picky, slowly: 0.3 s per item.
    'slow-picky': {
      command: [
        'sh',
        '-c',
        'while IFS= read -r x; do sleep 0.3; case "$x" in bad*) if [ ! -e "$FIX_FLAG" ]; then echo "cannot handle $x" >&2; exit 3; fi;; esac; echo "$x"; done'
      ]
    }
  }
}

describe('jobs with failing items, on three daemons', () => {
  let mesh: DaemonProcess[] = []
  let dir = ''
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-failures-'))
    mesh = await startMesh({ count: 3, config: CONFIG, logTo: (name) => join(dir, `${name}.log`) })
    await waitMeshReady(mesh.map((d) => d.api))
  })
  afterAll(async () => {
    await stopAll(mesh)
    rmSync(dir, { recursive: true, force: true })
  })

  it('a failed fragment does not stop the others; failures and their stderr are listed; retry after a fix succeeds', async () => {
    const [a, b, c] = mesh as [DaemonProcess, DaemonProcess, DaemonProcess]
    const fix = join(dir, 'fixed')
    const items = Array.from({ length: 20 }, (_, i) => (i === 3 || i === 11 ? `bad${i}` : `ok${i}`))
    const j = await submit(a.api, {
      task: 'picky',
      items,
      fragmentSize: 2,
      attempts: 1,
      env: { FIX_FLAG: fix }
    })
    await waitState(b.api, j.id, 'FAILED')
    // Every other fragment ran to its end: none is left RUNNABLE or RUNNING.
    const fs = await fragments(b.api, j.id)
    expect(fs.filter((f) => f.state === 'SUCCEEDED')).toHaveLength(8)
    expect(fs.filter((f) => f.state === 'FAILED').map((f) => f.itemRange)).toEqual([
      { start: 2, end: 4 },
      { start: 10, end: 12 }
    ])
    expect(fs.some((f) => f.state === 'RUNNABLE' || f.state === 'RUNNING')).toBe(false)
    // The failures, from a daemon that may not have run them, with the task's own words.
    const failures = await client(c.api).failures(j.id)
    expect(failures.map((f) => [f.itemRange, f.exitCode, f.reason])).toEqual([
      [{ start: 2, end: 4 }, 3, 'EXIT_CODE'],
      [{ start: 10, end: 12 }, 3, 'EXIT_CODE']
    ])
    expect(failures.map((f) => f.log.trim())).toEqual([
      'warming up\nattempt 1: cannot handle bad3',
      'warming up\nattempt 1: cannot handle bad11'
    ])
    // Every daemon that ran a failed try logged one line for it, with the stderr's last line.
    const logged = mesh
      .map((d) => readFileSync(join(dir, `${d.name}.log`), 'utf8'))
      .join('')
      .split('\n')
      .filter((l) => l.includes('"msg":"try failed"'))
    expect(logged).toHaveLength(2)
    expect(
      logged.some((l) => l.includes('"fragment":"5"') && l.includes('attempt 1: cannot handle bad11'))
    ).toBe(true)
    const listed = await shoal(['failures', j.id, '--api', c.api])
    expect(listed.code).toBe(0)
    expect(listed.stdout).toContain('cannot handle bad11')
    // Its output is partial: the CLI says so and exits 1, unless asked for the partial output.
    const out = await shoal(['output', j.id, '--api', c.api])
    expect(out.code).toBe(1)
    expect(out.stdout).toBe('')
    expect(out.stderr).toMatch(/is FAILED: 2 of 10 fragments have no output \(2 FAILED\); use --partial/)
    const partial = await shoal(['output', j.id, '--partial', '--api', c.api])
    expect(partial.code).toBe(0)
    expect(partial.stdout).toBe(lines(items.filter((_, i) => i !== 2 && i !== 3 && i !== 10 && i !== 11)))
    // Fix the task, retry: the failed fragments run again with fresh attempts.
    writeFileSync(fix, '')
    const retried = await shoal(['retry', j.id, '--api', a.api])
    expect(retried.code).toBe(0)
    await waitState(c.api, j.id, 'SUCCEEDED')
    expect((await client(c.api).output(j.id)).text).toBe(lines(items))
    expect(await client(a.api).failures(j.id)).toEqual([])
    // Nothing left to retry.
    await expect(client(a.api).retry(j.id)).rejects.toMatchObject({ status: 409, code: 'NOTHING_TO_RETRY' })
  })

  it('each try keeps its stderr: the log route and shoal logs by attempt; the fragment lists its tries', async () => {
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    const j = await submit(a.api, {
      task: 'picky',
      items: ['ok', 'bad'],
      fragmentSize: 2,
      attempts: 2,
      env: { FIX_FLAG: join(dir, 'never') }
    })
    await waitState(b.api, j.id, 'FAILED')
    const [frag] = await fragments(b.api, j.id)
    expect(frag?.tries.map((t) => [t.attempt, t.exitCode, t.reason])).toEqual([
      [1, 3, 'EXIT_CODE'],
      [2, 3, 'EXIT_CODE']
    ])
    expect(frag?.tries.every((t) => t.peer.length > 0 && (t.durationMs ?? -1) >= 0)).toBe(true)
    const first = await client(b.api).tryLog(j.id, '0', 1)
    expect(first).toMatchObject({
      attempt: 1,
      exitCode: 3,
      reason: 'EXIT_CODE',
      text: 'warming up\nattempt 1: cannot handle bad\n'
    })
    expect((await client(b.api).tryLog(j.id, '0')).text).toContain('attempt 2: cannot handle bad')
    const cli = await shoal(['logs', j.id, '0', '--attempt', '1', '--api', a.api])
    expect(cli.code).toBe(0)
    expect(cli.stdout).toBe('warming up\nattempt 1: cannot handle bad\n')
    const all = await shoal(['logs', j.id, '--api', a.api])
    expect(all.stdout).toMatch(
      /^== fragment 0 \(items 0-1\), attempt 2 on \S+: EXIT_CODE, exit 3\nwarming up\nattempt 2: cannot handle bad\n$/
    )
    await expect(client(b.api).tryLog(j.id, '0', 3)).rejects.toMatchObject({
      status: 404,
      code: 'TRY_NOT_FOUND'
    })
    await expect(client(b.api).tryLog(j.id, '7')).rejects.toMatchObject({
      status: 404,
      code: 'FRAGMENT_NOT_FOUND'
    })
  })

  it('failFast: the first failure cancels the rest at once; retry runs them', async () => {
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    const items = Array.from({ length: 30 }, (_, i) => (i === 0 ? 'bad0' : `ok${i}`))
    const fix = join(dir, 'fixed-fast')
    const j = await submit(a.api, {
      task: 'slow-picky',
      items,
      fragmentSize: 1,
      attempts: 1,
      failFast: true,
      env: { FIX_FLAG: fix }
    })
    await waitState(b.api, j.id, 'FAILED')
    const fs = await fragments(b.api, j.id)
    expect(fs.some((f) => f.state === 'RUNNABLE' || f.state === 'RUNNING')).toBe(false)
    // 30 fragments of 0.3 s on three daemons of capacity 2: most had not run yet.
    expect(fs.filter((f) => f.state === 'CANCELLED').length).toBeGreaterThan(10)
    expect(fs.filter((f) => f.state === 'FAILED')).toHaveLength(1)
    // Fixed and retried twice over (failing fast again in between): every fragment runs, none
    // is charged a lost host for the runs the stop killed.
    const rounds = async (): Promise<number> =>
      (await fragments(b.api, j.id)).reduce((n, f) => Math.max(n, ...f.tries.map((t) => t.round)), 0)
    await client(a.api).retry(j.id)
    await waitUntil(
      'the first retry round to fail fast again',
      async () => (await rounds()) >= 1 && (await job(b.api, j.id)).state === 'FAILED'
    )
    writeFileSync(fix, '')
    // Asked of the daemon whose view just showed the second failure (another may not know it yet).
    await client(b.api).retry(j.id)
    await waitState(b.api, j.id, 'SUCCEEDED')
    expect((await client(b.api).output(j.id)).text).toBe(lines(items))
    const after = await fragments(b.api, j.id)
    expect(after.filter((f) => f.tries.some((t) => t.reason === 'HOST_LOST'))).toEqual([])
  })

  it('onFailure bisect: 500 items, one bad in 37: exactly the bad items fail, every good one is output in order', async () => {
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    const items = Array.from({ length: 500 }, (_, i) => (i % 37 === 36 ? `bad${i}` : `ok${i}`))
    const bad = items.flatMap((x, i) => (x.startsWith('bad') ? [i] : []))
    const j = await submit(a.api, {
      task: 'picky',
      items,
      fragmentSize: 20,
      attempts: 1,
      onFailure: 'bisect',
      env: { FIX_FLAG: join(dir, 'never') }
    })
    await waitState(b.api, j.id, 'FAILED', 120_000)
    const failures = await client(b.api).failures(j.id)
    expect(failures.map((f) => f.itemRange)).toEqual(bad.map((i) => ({ start: i, end: i + 1 })))
    expect(failures.every((f) => f.log.trim().endsWith(`cannot handle ${items[f.itemRange.start]}`))).toBe(
      true
    )
    // Read from the other daemon once it too has every fragment's result (FAILED there: every
    // leaf ended); right after b saw FAILED, a could still lack the last results.
    await waitState(a.api, j.id, 'FAILED', 30_000)
    const out = await client(a.api).output(j.id)
    expect(out.complete).toBe(false)
    expect(out.text).toBe(lines(items.filter((x) => !x.startsWith('bad'))))
    expect(existsSync(join(dir, 'never'))).toBe(false)
  })
})
