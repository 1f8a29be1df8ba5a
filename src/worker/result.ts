import { createHash } from 'node:crypto'
import type { BlobStore, TaskResult, TaskRun } from '../core/ports.ts'

/** A result with nothing in it yet (no exit code, no output), timed from `started`. */
export function emptyResult(started: number): TaskResult {
  return {
    exitCode: null,
    signal: null,
    stdout: '',
    stored: false,
    sha256: createHash('sha256').digest('hex'),
    bytes: 0,
    stderrTail: '',
    timedOut: false,
    outputTooLarge: false,
    aborted: false,
    durationMs: performance.now() - started
  }
}

/**
 * A fragment that ended while it waited for a worker, without running: cancelled (or its claim
 * lost), or past its lifespan (a TIMEOUT, naming the kind of worker it waited for).
 */
export function notStarted(started: number, why: 'aborted' | 'timeout', worker: string): TaskResult {
  return why === 'aborted'
    ? { ...emptyResult(started), aborted: true, signal: 'SIGKILL' }
    : {
        ...emptyResult(started),
        timedOut: true,
        stderrTail: `the fragment waited past its lifespan for a free ${worker}\n`
      }
}

/**
 * The result of a run that succeeded with `out` held in memory (a module's return value, a
 * persistent worker's answer): inline when small, else stored as a blob; past maxOutputBytes,
 * too large. A blob the store refuses (a full disk) is this host's fault: the try is handed back.
 */
export async function outputResult(
  req: Pick<TaskRun, 'maxOutputBytes' | 'inlineOutputBytes'>,
  out: string,
  blobs: BlobStore | undefined,
  started: number,
  stderrTail = ''
): Promise<TaskResult> {
  const bytes = Buffer.from(out)
  if (bytes.length > req.maxOutputBytes) return { ...emptyResult(started), outputTooLarge: true, stderrTail }
  const sha256 = createHash('sha256').update(bytes).digest('hex')
  const base = { ...emptyResult(started), exitCode: 0, sha256, bytes: bytes.length, stderrTail }
  if (bytes.length <= req.inlineOutputBytes || blobs === undefined) return { ...base, stdout: out }
  try {
    await blobs.put(
      (async function* () {
        yield bytes
      })(),
      sha256
    )
  } catch (err) {
    return {
      ...emptyResult(started),
      spawnError: `cannot store the output: ${(err as Error).message}`,
      hostFault: true
    }
  }
  return { ...base, stored: true }
}

/**
 * Output lines as text: strings as they are, other JSON values as JSON; undefined (a line that
 * is missing) or what JSON cannot write (a function) is not a line.
 */
export function linesOf(lines: readonly unknown[]): string | { bad: string } {
  let out = ''
  for (const [i, l] of lines.entries()) {
    const text = typeof l === 'string' ? l : JSON.stringify(l)
    if (typeof text !== 'string') return { bad: `line ${i} is ${typeof l}, not text or JSON` }
    out += `${text}\n`
  }
  return out
}
