import type { TaskRun } from '../../../src/core/ports.ts'
import type { TaskConfig } from '../../../src/core/task.ts'

/** A run of `task` (named `taskName`) over `items`, with roomy limits the test may override. */
export function taskRun(
  taskName: string,
  task: TaskConfig,
  items: unknown[],
  extra: Partial<TaskRun> = {}
): TaskRun {
  return {
    taskName,
    task,
    command: task.command ?? [],
    env: { SHOAL_ATTEMPT: '1', SHOAL_FRAGMENT_PATH: '0', SHOAL_LEASE_EPOCH: '7' },
    items,
    lines: [],
    timeoutMs: 10_000,
    killGraceMs: 100,
    maxOutputBytes: 1 << 20,
    inlineOutputBytes: 1 << 20,
    ...extra
  }
}
