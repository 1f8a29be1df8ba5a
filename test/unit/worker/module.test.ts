import { join } from 'node:path'
import pino from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import { ROOT } from '../../../scripts/lib/local-mesh.ts'
import type { TaskRun } from '../../../src/core/ports.ts'
import { ModuleRunner } from '../../../src/worker/module.ts'
import { taskRun } from './task-run.ts'

const task = { module: join(ROOT, 'test', 'fixtures', 'module-task.mjs'), export: 'misbehave', maxWarm: 1 }
const runner = new ModuleRunner({ m: task }, { capacity: 4, log: pino({ level: 'silent' }) })
afterAll(() => runner.close())

const run = (items: unknown[], extra: Partial<TaskRun> = {}) => runner.run(taskRun('m', task, items, extra))

describe('module tasks', () => {
  it('whatever a module throws fails its fragment: null and undefined too', async () => {
    await runner.start()
    // `throw null` was taken for a success with no output; `throw undefined` crashed the run.
    for (const what of ['throw-null', 'throw-undefined']) {
      const r = await run([what])
      expect(r.exitCode, what).toBe(1)
      expect(r.stderrTail).toContain('the task threw')
    }
    const lines = await run(['undefined-line'])
    expect(lines.exitCode).toBe(1)
    expect(lines.stderrTail).toContain('line 1 is undefined')
    expect(await run(['fine'])).toMatchObject({ exitCode: 0, stdout: 'fine ok\n' })
  })

  it('maxWarm bounds the warm threads, not how many run: no fragment waits out its lifespan in a queue', async () => {
    // capacity 4, maxWarm 1: four fragments of 400 ms with a 1 s lifespan all run at once.
    const rs = await Promise.all(Array.from({ length: 4 }, () => run(['sleep400'], { timeoutMs: 1000 })))
    for (const r of rs) expect(r).toMatchObject({ exitCode: 0, timedOut: false, stdout: 'sleep400 ok\n' })
  })
})

describe('module tasks held several per thread', () => {
  // Found by a red-team review: a fragment waiting for the thread was charged its wait against
  // its lifespan, and timed out behind a slow one without running.
  const one = new ModuleRunner({ m: task }, { capacity: 1, log: pino({ level: 'silent' }) })
  afterAll(() => one.close())

  it('a fragment waiting behind a slow one starts its lifespan when it gets the thread', async () => {
    await one.start()
    for (let i = 0; i < 30; i++) await one.run(taskRun('m', task, ['fine']))
    expect(one.depth('m')).toBeGreaterThan(1) // the scheduler will hold several for the one thread
    // The second waits about 400 ms, then runs for 400 ms of its 700: charged its wait, it
    // would time out at 700 ms, 300 ms into its run.
    const [first, second] = await Promise.all([
      one.run(taskRun('m', task, ['sleep400'], { timeoutMs: 2000 })),
      one.run(taskRun('m', task, ['sleep400'], { timeoutMs: 700 }))
    ])
    expect(first.exitCode).toBe(0)
    expect(second).toMatchObject({ exitCode: 0, timedOut: false })
  })

  it('a fragment cancelled while it waits, or waiting a whole lifespan, ends without running; the thread goes on', async () => {
    const cancel = new AbortController()
    const slow = one.run(taskRun('m', task, ['sleep400'], { timeoutMs: 2000 }))
    const cancelled = one.run(taskRun('m', task, ['fine'], { signal: cancel.signal }))
    const late = one.run(taskRun('m', task, ['fine'], { timeoutMs: 20 }))
    cancel.abort('cancel')
    expect(await cancelled).toMatchObject({ aborted: true, stdout: '' })
    expect(await late).toMatchObject({ timedOut: true, stdout: '' })
    expect((await slow).exitCode).toBe(0)
    expect(await one.run(taskRun('m', task, ['fine']))).toMatchObject({ exitCode: 0 })
  })
})
