import { pathToFileURL } from 'node:url'
import { workerData } from 'node:worker_threads'
import { linesOf } from './result.ts'

/**
 * The code of one worker thread in a module task's pool (run by piscina): it loads the task's
 * module once, then calls its export for fragment after fragment. What a module sees as `ctx`.
 */
export interface ModuleContext {
  jobId: string
  /** The fragment's path ("3", "3.1" after a split) and index. */
  path: string
  fragmentIndex: number
  fragmentCount: number
  attempt: number
  /** The claim's fencing token: pass it to any external system that fences writes. */
  leaseEpoch: number
  peerId: string
  /** The task's and the job's env, and the SHOAL_* values a command task gets. */
  env: Record<string, string>
  /**
   * Emit a metric value (added in the worker thread; not part of what the pool is sent). The
   * values travel with the fragment's result: those of a fragment that throws are lost.
   */
  metric?: (name: string, value: number, labels?: Record<string, string>) => void
}

/** What the pool is asked: a fragment, or only to be ready (a warm-up that loads the module). */
export type ModuleRequest = { items: unknown[]; ctx: ModuleContext } | { warm: true }

type TaskFunction = (items: unknown[], ctx: ModuleContext) => unknown

const { module: modulePath, export: exportName } = workerData as { module: string; export: string }
let fn: TaskFunction | undefined

async function load(): Promise<TaskFunction> {
  const mod = (await import(pathToFileURL(modulePath).href)) as Record<string, unknown>
  const f = mod[exportName]
  if (typeof f !== 'function') {
    const has = Object.keys(mod).filter((k) => typeof mod[k] === 'function')
    throw new Error(
      `${modulePath} has no function export "${exportName}" (it exports: ${has.join(', ') || 'no function'})`
    )
  }
  return f as TaskFunction
}

/**
 * What the thread answers: the output, how long the function ran (ms; queueing excluded), and
 * the metric values it emitted grouped by series, `[name, labels, values]` (as given: the daemon
 * checks them), with how many were over the per-fragment limit.
 */
export type ModuleAnswer = [output: string, ranMs: number, metrics: unknown[][], over: number] | null

/** Values kept per fragment in the thread; the rest are counted. */
const MAX_VALUES = 100_000

/** Run the task's function: its output as text (a string as is, an array as lines). */
export default async function run(req: ModuleRequest): Promise<ModuleAnswer> {
  fn ??= await load()
  if ('warm' in req) return null
  const t0 = performance.now()
  // Grouped here by series, so that what crosses to the daemon is a few arrays of numbers.
  const groups = new Map<string, [unknown, unknown, unknown[]]>()
  let kept = 0
  let over = 0
  // The series of the last call: a task that emits in a loop names the same one again.
  let last: { name: unknown; labels: unknown; values: unknown[] } | undefined
  req.ctx.metric = (name, value, labels) => {
    if (kept >= MAX_VALUES) {
      over++
      return
    }
    if (last !== undefined && last.name === name && last.labels === labels && typeof value === 'number') {
      kept++
      last.values.push(value)
      return
    }
    // Only what can cross to the daemon: a string name, a number, labels of strings (the daemon
    // checks the rest). Anything else is dropped and counted, not a failure of the fragment.
    let key: string
    try {
      if (typeof name !== 'string' || typeof value !== 'number') throw new TypeError('not a metric')
      if (labels !== undefined && (typeof labels !== 'object' || labels === null || Array.isArray(labels)))
        throw new TypeError('labels')
      if (labels !== undefined && Object.values(labels).some((v) => typeof v !== 'string'))
        throw new TypeError('labels')
      key = labels === undefined ? name : `${name}\n${JSON.stringify(labels)}`
    } catch {
      over++
      return
    }
    kept++
    let g = groups.get(key)
    if (g === undefined) {
      g = [name, labels === undefined ? null : { ...labels }, []]
      groups.set(key, g)
    }
    g[2].push(value)
    last = { name, labels, values: g[2] }
  }
  return [await output(fn, req), performance.now() - t0, [...groups.values()], over]
}

async function output(fn: TaskFunction, req: { items: unknown[]; ctx: ModuleContext }): Promise<string> {
  let out: unknown
  try {
    out = await fn(req.items, req.ctx)
  } catch (err) {
    // Whatever was thrown fails the fragment: `throw null` too (the pool would take a null
    // error for a success), and `throw undefined`.
    if (err instanceof Error) throw err
    throw new Error(`the task threw ${typeof err === 'string' ? err : String(JSON.stringify(err) ?? err)}`)
  }
  if (typeof out === 'string') return out
  if (Array.isArray(out)) {
    const lines = linesOf(out)
    if (typeof lines !== 'string') throw new TypeError(`the task returned an array whose ${lines.bad}`)
    return lines
  }
  if (out === undefined || out === null) return ''
  throw new TypeError(`the task returned ${typeof out}; return a string or an array of lines`)
}
