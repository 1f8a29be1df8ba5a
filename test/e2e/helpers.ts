import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { FAST, MAIN, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { ApiError, ShoalClient } from '../../src/cli/client.ts'
import type {
  FragmentRecord,
  Health,
  JobOutput,
  JobSummary,
  PeerSummary,
  SubmitAnswer
} from '../../src/core/api.ts'
import type { JobSpecInput } from '../../src/core/spec.ts'
import type { JobState } from '../../src/core/status.ts'

/**
 * Kill every task process recorded in a pid dir (left by killed daemons), then remove the dir.
 * Only a process whose environment still names the dir is one of those tasks: pids wrap (32,768
 * here, reached within minutes of tests), and a recorded pid may since be another process's.
 */
export function reapPidDir(dir: string): void {
  for (const f of readdirSync(dir)) {
    const pid = Number(readFileSync(join(dir, f), 'utf8'))
    if (alive(pid) && taskOf(pid, dir)) process.kill(pid, 'SIGKILL')
  }
  rmSync(dir, { recursive: true, force: true })
}

/** Whether `pid` is a task given this pid dir (PID_DIR in its environment). */
function taskOf(pid: number, dir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`PID_DIR=${dir}`)
  } catch {
    return false
  }
}

const clients = new Map<string, ShoalClient>()

/**
 * The API client of the daemon at `api`: one per address and timeout (a ShoalClient keeps nothing
 * between calls). Without `timeoutMs`, the client's own (30 s a request).
 */
export function client(api: string, timeoutMs?: number): ShoalClient {
  const key = `${timeoutMs ?? ''} ${api}`
  let c = clients.get(key)
  if (c === undefined) {
    c = new ShoalClient(api, timeoutMs === undefined ? {} : { timeoutMs })
    clients.set(key, c)
  }
  return c
}

/** The time one polled read may take: a daemon that hangs fails one poll, not the whole wait around it. */
export const READ_TIMEOUT_MS = 10_000

/** The client of the daemon at `api` for the reads tests poll (health, peers, jobs): READ_TIMEOUT_MS each. */
export const reader = (api: string): ShoalClient => client(api, READ_TIMEOUT_MS)

// The calls most tests make, by the daemon's address.
export const fragments = (api: string, id: string): Promise<FragmentRecord[]> => client(api).fragments(id)
export const job = (api: string, id: string): Promise<JobSummary> => client(api).job(id)
export const peers = (api: string): Promise<PeerSummary[]> => client(api).peers()
export const submit = (api: string, spec: JobSpecInput): Promise<SubmitAnswer> => client(api).submit(spec)
export const output = (api: string, id: string): Promise<JobOutput> => client(api).output(id)
export const health = (api: string): Promise<Health> => reader(api).health()

/** The ApiError a call of the API fails with; throws when the call succeeds or fails otherwise. */
export async function apiError(call: Promise<unknown>): Promise<ApiError> {
  try {
    await call
  } catch (err) {
    if (err instanceof ApiError) return err
    throw err
  }
  throw new Error('the call succeeded; an API error was expected')
}

/** An answer of the API with its HTTP status: the body of a success, or the ApiError of a refusal. */
export type Answer<T> =
  | { status: number; body: T; error?: undefined }
  | { status: number; body?: undefined; error: ApiError }

/** The answer of a request through the client, success or refusal; no answer at all still throws. */
async function answer<T>(call: Promise<Response>): Promise<Answer<T>> {
  try {
    const res = await call
    return { status: res.status, body: (await res.json()) as T }
  } catch (err) {
    if (err instanceof ApiError && err.status !== 0) return { status: err.status, error: err }
    throw err
  }
}

/** POST /v1/jobs, for a test that asserts the status either way (202, 507, …). */
export const submitAnswer = (api: string, spec: JobSpecInput): Promise<Answer<SubmitAnswer>> =>
  answer(client(api).request('POST', '/v1/jobs', JSON.stringify(spec)))

/** POST /v1/jobs/:id/cancel, for a test that asserts the status either way (200, 409, …). */
export const cancelAnswer = (api: string, id: string): Promise<Answer<JobSummary>> =>
  answer(client(api).request('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`))

/** Wait until the job reaches `state` as seen by the daemon at `api`. */
export function waitState(api: string, id: string, state: JobState, timeoutMs = 60_000): Promise<JobSummary> {
  return waitUntil(
    `job ${id} ${state} at ${api}`,
    async () => {
      const j = await job(api, id)
      return j.state === state ? j : null
    },
    timeoutMs,
    100
  )
}

/** Wait until every daemon sees every other as alive and synced. */
export async function waitMeshReady(apis: string[], timeoutMs = 30_000): Promise<void> {
  for (const api of apis) {
    await waitUntil(
      `${api} to see ${apis.length} alive, synced daemons`,
      async () => (await peers(api)).filter((p) => p.state === 'alive' && p.synced).length === apis.length,
      timeoutMs
    )
  }
}

/** The expected output of the echo-like tasks for items, in order. */
export const lines = (items: Array<string | number>) => items.map((x) => `${x}\n`).join('')

/** Is a process alive? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * FAST settings plus the tasks the end-to-end tests share. Tasks that take PID_DIR write their
 * pid to `PID_DIR/<path>.<lease epoch>.<peer>`, so a test can see who ran what, with which token,
 * and whether the process is still alive.
 */
export const TEST_CONFIG = {
  ...FAST,
  tasks: {
    ...FAST.tasks,
    // Slow (SLOW_SECONDS, default 60) only on the daemon named by the job's SLOW_PEER, and, if
    // the job names a SLOW_FLAG file, only while that file exists.
    'slow-on': {
      command: [
        'sh',
        '-c',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell parameter expansion
        '[ -z "$PID_DIR" ] || echo $$ > "$PID_DIR/$SHOAL_FRAGMENT_PATH.$SHOAL_LEASE_EPOCH.$SHOAL_PEER_ID"; if [ "$SLOW_PEER" = everyone ] || [ "$SHOAL_PEER_ID" = "$SLOW_PEER" ] && { [ -z "$SLOW_FLAG" ] || [ -e "$SLOW_FLAG" ]; }; then sleep "${SLOW_SECONDS:-60}"; else sleep 0.2; fi; cat'
      ]
    },
    long: {
      command: [
        'sh',
        '-c',
        'echo $$ > "$PID_DIR/$SHOAL_FRAGMENT_PATH.$SHOAL_LEASE_EPOCH.$SHOAL_PEER_ID"; sleep 30; cat'
      ]
    },
    nap: { command: ['sh', '-c', 'sleep 0.3; cat'] },
    // Fails its first attempt with exit code 4.
    flaky: { command: ['sh', '-c', '[ "$SHOAL_ATTEMPT" -ge 2 ] || exit 4; cat'] },
    // 0.3 s per item: a 12-item fragment needs 3.6 s, past a 1.5 s lifespan.
    'per-item': { command: ['sh', '-c', 'while IFS= read -r x; do sleep 0.3; echo "$x"; done'] }
  }
}

/** What a run of the CLI did. */
export interface CliRun {
  code: number
  stdout: string
  stderr: string
}

/** Run the real CLI (`node src/main.ts …`), `stdin` on its standard input, and collect its exit code and output. */
export function shoal(args: string[], env: Record<string, string> = {}, stdin = ''): Promise<CliRun> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [MAIN, ...args],
      { env: { ...process.env, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1
        resolve({ code, stdout, stderr })
      }
    )
    child.stdin?.end(stdin)
  })
}

/** A task that writes `bytes` bytes of output: its item and a newline, over and over. */
export function bigTask(bytes: number): { command: string[] } {
  return { command: ['sh', '-c', `read item; yes "$item" | head -c ${bytes}`] }
}

/** The sha256 of what bigTask(bytes) writes for these items in order, computed without holding it. */
export function repeatedHash(items: string[], bytes: number): string {
  const h = createHash('sha256')
  const MIB = 1024 * 1024
  for (const item of items) {
    const line = `${item}\n`
    const block = Buffer.alloc(MIB - (MIB % line.length), line)
    for (let left = bytes; left > 0; left -= block.length)
      h.update(block.subarray(0, Math.min(left, block.length)))
  }
  return h.digest('hex')
}

/** Resident set size of a process, bytes. */
export function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(m?.[1] ?? 0) * 1024
}

/** GET /output streamed through sha256: its hash, the bytes read, and the announced length. */
export async function hashOutput(
  api: string,
  id: string
): Promise<{ sha256: string; bytes: number; length: number }> {
  const out = await client(api, 60_000).outputStream(id)
  const h = createHash('sha256')
  let bytes = 0
  for await (const chunk of out.body) {
    h.update(chunk)
    bytes += chunk.byteLength
  }
  return { sha256: h.digest('hex'), bytes, length: out.bytes }
}
