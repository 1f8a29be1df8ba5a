import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import { ROOT } from '../../../scripts/lib/local-mesh.ts'
import type { TaskRun } from '../../../src/core/ports.ts'
import { NdjsonRunner } from '../../../src/worker/ndjson.ts'

const work = mkdtempSync(join(tmpdir(), 'shoal-ndjson-'))
const task = {
  command: [process.execPath, join(ROOT, 'test', 'fixtures', 'ndjson-worker.mjs')],
  protocol: 'ndjson' as const,
  minWarm: 0
}
const runner = new NdjsonRunner(
  { p: task },
  { capacity: 2, workRoot: work, taskPath: '/usr/bin:/bin', log: pino({ level: 'silent' }) }
)
afterAll(async () => {
  await runner.close()
  rmSync(work, { recursive: true, force: true })
})

function run(items: unknown[], extra: Partial<TaskRun> = {}) {
  return runner.run({
    taskName: 'p',
    task,
    command: task.command,
    env: { SHOAL_ATTEMPT: '1' },
    items,
    lines: [],
    timeoutMs: 10_000,
    killGraceMs: 100,
    maxOutputBytes: 1 << 20,
    inlineOutputBytes: 1 << 20,
    ...extra
  })
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('persistent ndjson workers', () => {
  it('a lost claim kills the worker mid-fragment: nothing of it is recorded, and the next fragment gets a new worker', async () => {
    const first = await run([1])
    const pid = Number(/pid (\d+)/.exec(first.stdout)?.[1])
    expect(first).toMatchObject({ exitCode: 0, stdout: `2 pid ${pid}\n` })
    expect((await run([2])).stdout).toBe(`4 pid ${pid}\n`) // the same, warm worker

    const lost = new AbortController()
    const pending = run(['slow'], { signal: lost.signal })
    setTimeout(() => lost.abort('lost'), 10)
    const r = await pending
    expect(r).toMatchObject({ aborted: true, exitCode: null, stdout: '' })
    expect(alive(pid)).toBe(false)

    const next = await run([3])
    const pid2 = Number(/pid (\d+)/.exec(next.stdout)?.[1])
    expect(pid2).not.toBe(pid)
    expect(runner.stats()[0]).toMatchObject({ task: 'p', kind: 'ndjson', warmHits: 2, coldStarts: 2 })
  })

  it('a worker past the fragment lifespan is killed: the fragment times out', async () => {
    const r = await run(['slow'], { timeoutMs: 10 })
    expect(r).toMatchObject({ timedOut: true, exitCode: null })
  })
})
