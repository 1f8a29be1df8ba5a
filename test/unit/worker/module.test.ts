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
