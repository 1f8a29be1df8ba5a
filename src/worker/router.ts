import type { Logger } from 'pino'
import type { DemandForecast } from '../core/forecast.ts'
import type { BlobStore, TaskResult, TaskRun, TaskRunner } from '../core/ports.ts'
import type { TaskConfig } from '../core/task.ts'
import type { CommandExecutor } from './command.ts'
import { ModuleRunner } from './module.ts'
import { NdjsonRunner } from './ndjson.ts'
import type { PoolStats } from './pool.ts'

/**
 * The daemon's task runner: a cold process per fragment for command tasks (CommandExecutor), a
 * persistent worker for `protocol: "ndjson"` commands, a worker thread for module tasks.
 */
export class TaskRouter implements TaskRunner {
  readonly commands: CommandExecutor
  readonly modules: ModuleRunner
  readonly workers: NdjsonRunner

  constructor(
    commands: CommandExecutor,
    tasks: Record<string, TaskConfig>,
    options: { capacity: number; workRoot: string; taskPath: string; blobs?: BlobStore; log: Logger }
  ) {
    this.commands = commands
    this.modules = new ModuleRunner(tasks, options)
    this.workers = new NdjsonRunner(tasks, options)
  }

  /** Load the module tasks (a config error names a missing module or export) and warm the pools. */
  async start(): Promise<void> {
    try {
      await this.modules.start()
      await this.workers.start()
    } catch (err) {
      await this.close()
      throw err
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.modules.close(), this.workers.close()])
  }

  run(req: TaskRun): Promise<TaskResult> {
    if (this.modules.takes(req.task)) return this.modules.run(req)
    if (this.workers.takes(req.task)) return this.workers.run(req)
    return this.commands.run(req)
  }

  /**
   * Module and persistent-worker tasks queue fragments for their workers, so a worker goes from
   * one fragment to the next without waiting for the claim loop; a cold process is one per slot.
   */
  depth(taskName: string, task: TaskConfig): number {
    if (this.modules.takes(task)) return this.modules.depth(taskName)
    if (this.workers.takes(task)) return this.workers.depth(taskName)
    return 1
  }

  /** The demand forecast of a module or ndjson task's warm pool, to feed (schedules, history). */
  forecast(taskName: string): DemandForecast | undefined {
    return this.modules.forecast(taskName) ?? this.workers.forecast(taskName)
  }

  pools(): PoolStats[] {
    return [...this.modules.stats(), ...this.workers.stats()]
  }
}
