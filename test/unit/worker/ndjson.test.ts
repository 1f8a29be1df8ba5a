import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import { ROOT } from '../../../scripts/lib/local-mesh.ts'
import type { TaskRun } from '../../../src/core/ports.ts'
import { NdjsonRunner } from '../../../src/worker/ndjson.ts'
import { taskRun } from './task-run.ts'

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

const run = (items: unknown[], extra: Partial<TaskRun> = {}) => runner.run(taskRun('p', task, items, extra))

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

  it('fragments beyond the workers wait for one to come free: no more workers than the limit', async () => {
    // Capacity 2: a daemon holding several short fragments per slot hands them all over at once.
    const results = await Promise.all(Array.from({ length: 6 }, () => run(['slow'])))
    expect(results.map((r) => r.exitCode)).toEqual([0, 0, 0, 0, 0, 0])
    const pids = new Set(results.map((r) => /pid (\d+)/.exec(r.stdout)?.[1]))
    expect(pids.size).toBeLessThanOrEqual(2)
    expect(runner.stats()[0]?.size).toBeLessThanOrEqual(2)
    // One cancelled while it waits ends at once as aborted, and takes no worker.
    const cancel = new AbortController()
    const busy = [run(['slow']), run(['slow'])]
    const waiting = run([1], { signal: cancel.signal })
    cancel.abort('cancel')
    expect(await waiting).toMatchObject({ aborted: true, stdout: '' })
    expect((await Promise.all(busy)).map((r) => r.exitCode)).toEqual([0, 0])
  })

  it('a worker past the fragment lifespan is killed: the fragment times out', async () => {
    const r = await run(['slow'], { timeoutMs: 10 })
    expect(r).toMatchObject({ timedOut: true, exitCode: null })
  })

  it('an answer out of turn breaks the protocol: the worker is replaced, no fragment takes a stale answer', async () => {
    // "twice" answers its fragment, then again 30 ms later: the extra line once became the answer
    // to the next fragment on that worker, and every answer after it shifted by one.
    const first = await run(['twice'])
    expect(first).toMatchObject({ exitCode: 0, stdout: 'first\n' })
    const next = run(['slow']) // outstanding while the stray line arrives
    const r = await next
    expect(r.stdout).not.toContain('STALE')
    if (r.exitCode === 0) expect(r.stdout).toMatch(/^slow pid \d+\n$/)
    else expect(r.stderrTail).toMatch(/answered request \d+ to request \d+|nobody asked/)
    const after = await run([5])
    expect(after).toMatchObject({ exitCode: 0 })
    expect(after.stdout).toMatch(/^10 pid \d+\n$/)
  })

  it('a worker that ends without answering fails its fragment, even with exit code 0', async () => {
    const r = await run(['exit0'])
    expect(r.exitCode).toBe(1)
    expect(r.stderrTail).toContain('without answering')
  })

  it('a fragment sent to a warm worker on its way out runs on a fresh one, and does not fail', async () => {
    // The worker answered, then exited cleanly without reading the next line: under load the
    // next fragment reached it before its exit did, and failed with exit code 1.
    const first = await run([1])
    const pid = Number(/pid (\d+)/.exec(first.stdout)?.[1])
    expect(await run(['answer-leave'])).toMatchObject({ exitCode: 0, stdout: 'leaving\n' })
    const next = await run([7])
    expect(next).toMatchObject({ exitCode: 0 })
    expect(next.stdout).toMatch(/^14 pid \d+\n$/)
    expect(next.stdout).not.toBe(`14 pid ${pid}\n`)
  })

  it('an answer written just before the worker exits is kept', async () => {
    // (The exit event may come before the answer's data; the answer used to be lost, and the
    // fragment recorded as a success with no output.) Each run gets a fresh worker: the last one
    // exited after answering.
    for (let i = 0; i < 10; i++) {
      expect(await run(['answer-exit'])).toMatchObject({ exitCode: 0, stdout: 'done\n' })
      await new Promise((r) => setTimeout(r, 30))
    }
  })

  it('an 8 MiB answer, read in many chunks, arrives whole', async () => {
    const r = await run(['big'], { maxOutputBytes: 16 << 20, inlineOutputBytes: 16 << 20 })
    expect(r.exitCode).toBe(0)
    expect(r.stdout.length).toBe(8 * 1024 * 1024)
    expect(r.stdout).toBe('x'.repeat(8 * 1024 * 1024))
  })

  it('an answer with no usable output fails the fragment and replaces the worker', async () => {
    const r = await run(['num'])
    expect(r.exitCode).toBe(1)
    expect(r.stderrTail).toContain('no "output"')
    expect((await run([1])).exitCode).toBe(0)
  })
})

describe('persistent ndjson workers, one at most', () => {
  // Found by a red-team review of the queue of fragments waiting for a worker.
  const one = { ...task, maxWarm: 1 }
  const single = (workRoot = work) =>
    new NdjsonRunner(
      { p: one },
      { capacity: 1, workRoot, taskPath: '/usr/bin:/bin', log: pino({ level: 'silent' }) }
    )
  /** Run these fragments at once; the most workers alive at any moment. */
  async function atOnce(r: NdjsonRunner, items: unknown[]) {
    let most = 0
    const sample = setInterval(() => {
      most = Math.max(most, r.stats()[0]?.size ?? 0)
    }, 1)
    try {
      const results = await Promise.all(items.map((i) => r.run(taskRun('p', one, [i]))))
      return { results, most: Math.max(most, r.stats()[0]?.size ?? 0) }
    } finally {
      clearInterval(sample)
    }
  }

  it('a warm worker that ends after its answer while fragments wait: they run, on no more workers than the limit', async () => {
    for (const end of ['answer-exit', 'answer-die']) {
      const r = single()
      try {
        await r.run(taskRun('p', one, [1]))
        const { results, most } = await atOnce(r, [end, 2, 3])
        expect(results.map((x) => x.exitCode)).toEqual([0, 0, 0])
        expect(results.map((x) => x.stdout.split(' ')[0])).toEqual(['done\n', '4', '6'])
        expect(most).toBe(1)
      } finally {
        await r.close()
      }
    }
  })

  it('a fragment waiting for a worker that could not start is woken: it fails to start too, and does not hang', async () => {
    const r = single(join(work, 'missing', 'dir'))
    try {
      const [a, b] = await Promise.all([r.run(taskRun('p', one, [1])), r.run(taskRun('p', one, [2]))])
      expect(a.spawnError).toBeDefined()
      expect(b.spawnError).toBeDefined()
    } finally {
      await r.close()
    }
  })

  it('a fragment that waits past its lifespan for a worker times out without running', async () => {
    const r = single()
    try {
      const [slow, waiting] = await Promise.all([
        r.run(taskRun('p', one, ['slow'])),
        r.run(taskRun('p', one, [1], { timeoutMs: 10 }))
      ])
      expect(slow.exitCode).toBe(0)
      expect(waiting).toMatchObject({ timedOut: true, stdout: '' })
      expect(waiting.stderrTail).toContain('waited past its lifespan')
    } finally {
      await r.close()
    }
  })
})
