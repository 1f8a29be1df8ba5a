import { readFile } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { text } from 'node:stream/consumers'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as NodeReadableStream } from 'node:stream/web'
import { type Command, InvalidArgumentError } from 'commander'
import type { JobSummary } from '../core/api.ts'
import { describeSystemError } from '../core/errors.ts'
import { isTerminalJobState } from '../core/status.ts'
import { ApiError, CliError, EXIT, ShoalClient } from './client.ts'
import { progressLine, table } from './format.ts'

function client(cmd: Command): ShoalClient {
  const opts = cmd.optsWithGlobals<{ api?: string; token?: string }>()
  const api = opts.api ?? process.env.SHOAL_API ?? 'http://127.0.0.1:7070'
  checkApiUrl(api, opts.api !== undefined ? '--api' : 'SHOAL_API')
  return new ShoalClient(api, { token: opts.token ?? process.env.SHOAL_TOKEN })
}

/**
 * A client's `--api` is the daemon's URL (the daemon's own `--api` is HOST:PORT): refuse
 * anything else here, naming the flag, rather than report the daemon as unreachable (exit 3).
 */
function checkApiUrl(api: string, from: string): void {
  const fail = (why: string): never => {
    throw new CliError(EXIT.USAGE, `api (from ${from}): "${api}" ${why}, e.g. http://127.0.0.1:7070`)
  }
  const url = URL.canParse(api) ? new URL(api) : fail('is not a URL')
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail('is not an http:// or https:// URL')
  if (url.username !== '' || url.password !== '')
    fail('carries credentials; give the token with --token or SHOAL_TOKEN')
  if ((url.search !== '' && url.search !== '?') || url.hash !== '') fail('has a query or fragment')
}

/** Read a JSON argument (a file, or - for stdin); `field` names it in messages ("spec file"). */
async function readSpec(file: string, field: string): Promise<string> {
  let raw: string
  try {
    raw = file === '-' ? await text(process.stdin) : await readFile(file, 'utf8')
  } catch (err) {
    throw new CliError(EXIT.USAGE, `${field}: cannot read ${file}: ${describeSystemError(err)}`)
  }
  try {
    JSON.parse(raw)
  } catch (err) {
    throw new CliError(EXIT.USAGE, `${field}: ${file} is not valid JSON: ${(err as Error).message}`)
  }
  return raw
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * Follow a job until it ends, from its event stream (resumed where it dropped; polling if no
 * daemon answers it); draw a live progress bar on a terminal, plain lines on change otherwise.
 * Rate and ETA come from the job's own times, not from when the watch began.
 */
async function waitFor(c: ShoalClient, id: string): Promise<JobSummary> {
  const tty = process.stderr.isTTY === true
  let last = ''
  const show = (job: JobSummary): void => {
    const line = progressLine(job, Date.now())
    if (tty) process.stderr.write(`\r${line}\x1b[K${isTerminalJobState(job.state) ? '\n' : ''}`)
    else {
      const key = `${job.state} ${JSON.stringify(job.statusSummary)}`
      if (key !== last) process.stderr.write(`${line}\n`)
      last = key
    }
  }
  try {
    for await (const job of c.events(id)) {
      show(job)
      if (isTerminalJobState(job.state)) return job
    }
  } catch (err) {
    if (err instanceof ApiError && !err.unreachable) throw err
    // The stream broke (daemon restarting, proxy): fall back to polling.
  }
  for (;;) {
    const job = await c.job(id)
    show(job)
    if (isTerminalJobState(job.state)) return job
    await sleep(500)
  }
}

function print(value: unknown): void {
  process.stdout.write(`${typeof value === 'string' ? value : JSON.stringify(value, null, 2)}\n`)
}

/**
 * Register the client commands on a commander program. `version` is this CLI's (passed in: the
 * CLI reads nothing of the daemon's code).
 */
export function registerClientCommands(
  program: Command,
  setExit: (code: number) => void,
  version: string
): void {
  program
    .command('submit')
    .description('submit a job spec (a JSON file, or - for stdin); prints the job id')
    .argument('<file>', 'job spec JSON file, or - for stdin')
    .option('--wait', 'follow the job and exit like it: 0 succeeded, 1 failed or cancelled')
    .action(async (file: string, opts: { wait?: boolean }, cmd: Command) => {
      const c = client(cmd)
      const body = await readSpec(file, 'job spec')
      const job = await c.submit(body)
      print(job.id)
      if (opts.wait === true) {
        const end = await waitFor(c, job.id)
        setExit(end.state === 'SUCCEEDED' ? EXIT.OK : EXIT.JOB_FAILED)
      }
    })

  program
    .command('watch')
    .description('follow a job until it ends; exits 0 if it succeeded, 1 if it failed or was cancelled')
    .argument('<id>')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const end = await waitFor(client(cmd), id)
      setExit(end.state === 'SUCCEEDED' ? EXIT.OK : EXIT.JOB_FAILED)
    })

  program
    .command('cancel')
    .description('cancel a job: running fragments are killed on every daemon, none start')
    .argument('<id>')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const job = await client(cmd).cancel(id)
      print(`${job.id} ${job.state}`)
    })

  program
    .command('delete')
    .description(
      'delete a finished job on every daemon: it leaves the lists, its fragments and output are collected'
    )
    .argument('<id>')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const job = await client(cmd).deleteJob(id)
      print(`${job.id} deleted (was ${job.state})`)
    })

  program
    .command('retry')
    .description('run the failed and cancelled fragments of a job again, with fresh attempts')
    .argument('<id>')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const job = await client(cmd).retry(id)
      print(`${job.id} ${job.state}`)
    })

  program
    .command('failures')
    .description("list a job's fragments that failed for good: items, exit code, stderr tail")
    .argument('<id>')
    .option('--json', 'print JSON')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const failures = await client(cmd).failures(id)
      if (opts.json === true) return print(failures)
      print(
        table(
          ['PATH', 'ITEMS', 'REASON', 'EXIT', 'ATTEMPT', 'PEER', 'STDERR (last line)'],
          failures.map((f) => [
            f.path,
            items(f.itemRange),
            f.reason,
            f.exitCode,
            f.attempt,
            f.peer,
            f.log.trimEnd().split('\n').pop() ?? ''
          ])
        )
      )
    })

  program
    .command('logs')
    .description(
      "print the stderr of a fragment's last try (or of --attempt N); without FRAGMENT, of every fragment whose last try failed"
    )
    .argument('<id>')
    .argument('[fragment]', 'a fragment path, as `shoal fragments` shows it')
    .option('--attempt <n>', 'that attempt instead of the last try', (v) => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be an integer >= 1')
      return n
    })
    .action(async (id: string, fragment: string | undefined, opts: { attempt?: number }, cmd: Command) => {
      const c = client(cmd)
      if (fragment !== undefined) {
        process.stdout.write((await c.tryLog(id, fragment, opts.attempt)).text)
        return
      }
      for (const f of await c.fragments(id)) {
        const last = f.tries.at(-1)
        if (last === undefined || last.reason === null) continue
        const t = await c.tryLog(id, f.path)
        process.stdout.write(
          `== fragment ${f.path} (items ${items(f.itemRange)}), attempt ${t.attempt} on ${t.peer}: ${t.reason}, exit ${t.exitCode ?? '-'}\n${t.text}${t.text.endsWith('\n') || t.text === '' ? '' : '\n'}`
        )
      }
    })

  program
    .command('jobs')
    .description('list jobs, newest first')
    .option('--state <state>', 'only jobs in this state')
    .option('--schedule <name>', "only the jobs of this schedule's ticks")
    .option('--json', 'print JSON')
    .action(async (opts: { state?: string; schedule?: string; json?: boolean }, cmd: Command) => {
      const jobs = await client(cmd).jobs(
        opts.state,
        opts.schedule !== undefined ? { schedule: opts.schedule } : {}
      )
      if (opts.json === true) return print(jobs)
      print(
        table(
          ['ID', 'STATE', 'TASK', 'DONE', 'FRAGMENTS', 'CREATED'],
          jobs.map((j) => [j.id, j.state, j.task, j.statusSummary.SUCCEEDED ?? 0, j.fragments, j.createdAt])
        )
      )
    })

  program
    .command('status')
    .description("show a job's status")
    .argument('<id>')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      print(await client(cmd).job(id))
    })

  program
    .command('fragments')
    .description("list a job's fragments in order")
    .argument('<id>')
    .option('--json', 'print JSON')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const frags = await client(cmd).fragments(id)
      if (opts.json === true) return print(frags)
      print(
        table(
          ['PATH', 'ITEMS', 'STATE', 'REASON', 'ATTEMPT', 'EPOCH', 'EXIT', 'PEER'],
          frags.map((f) => [
            f.path,
            items(f.itemRange),
            f.state,
            f.statusReason,
            f.attempt,
            f.epoch,
            f.exitCode,
            f.peer
          ])
        )
      )
    })

  program
    .command('output')
    .description(
      "print a job's output (stdout of its fragments, in order); exits 1 when the job did not succeed, unless --partial"
    )
    .argument('<id>')
    .option('--partial', 'print what there is of a job that has not succeeded (exit 0)')
    .action(async (id: string, opts: { partial?: boolean }, cmd: Command) => {
      const c = client(cmd)
      let out = await c.outputStream(id)
      // Say what is missing: the job's state and its fragments that have no output. (A job that
      // succeeded between the two calls: its output is complete now.)
      const job = out.complete ? undefined : await c.job(id)
      if (job?.state === 'SUCCEEDED') {
        await out.body.cancel()
        out = await c.outputStream(id)
      }
      if (out.complete || job === undefined) {
        await writeOut(out.body)
        return
      }
      const s = job.statusSummary
      const missing = Object.entries(s)
        .filter(([state, n]) => state !== 'SUCCEEDED' && n > 0)
        .map(([state, n]) => `${n} ${state}`)
        .join(', ')
      const leaves = Object.values(s).reduce((n, k) => n + k, 0)
      const what = `job ${id} is ${job.state}: ${leaves - s.SUCCEEDED} of ${leaves} fragments have no output (${missing})`
      if (opts.partial === true) {
        await writeOut(out.body)
        process.stderr.write(`shoal: ${what}; this output is partial\n`)
        return
      }
      await out.body.cancel()
      process.stderr.write(`shoal: ${what}; use --partial to print the rest\n`)
      setExit(EXIT.JOB_FAILED)
    })

  program
    .command('metrics')
    .description(
      "a job's task metrics over every daemon: count, sum, min, max, p50, p90, p99 per metric and labels"
    )
    .argument('<id>')
    .option('--json', 'print JSON')
    .action(async (id: string, opts: { json?: boolean }, cmd: Command) => {
      const m = await client(cmd).metrics(id)
      if (opts.json === true) return print(m)
      const num = (v: number | null): string | number =>
        v === null ? '-' : Number.isInteger(v) ? v : Number(v.toPrecision(6))
      print(
        table(
          ['TASK', 'METRIC', 'LABELS', 'COUNT', 'SUM', 'MIN', 'MAX', 'P50', 'P90', 'P99'],
          m.metrics.map((s) => [
            s.task,
            s.name,
            Object.entries(s.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(',') || '-',
            s.count,
            num(s.sum),
            num(s.min),
            num(s.max),
            num(s.p50),
            num(s.p90),
            num(s.p99)
          ])
        )
      )
      if (m.dropped > 0)
        process.stderr.write(
          `shoal: ${m.dropped} values were dropped (not JSON, too large, over the limits)\n`
        )
    })

  const schedule = program
    .command('schedule')
    .description('cron schedules: each tick makes one job, fired once across the mesh')
  schedule
    .command('create')
    .description('create a schedule, or replace the one of that name (a JSON file, or - for stdin)')
    .argument('<file>', 'schedule JSON file: {"name", "cron", "timezone", "template", ...}, or -')
    .action(async (file: string, _opts: unknown, cmd: Command) => {
      const s = await client(cmd).putSchedule(await readSpec(file, 'schedule file'))
      print(`${s.name} next tick ${s.nextTick ?? '-'}`)
    })
  schedule
    .command('list')
    .description('list the schedules')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const all = await client(cmd).schedules()
      if (opts.json === true) return print(all)
      print(
        table(
          ['NAME', 'TENANT', 'CRON', 'TIMEZONE', 'TASK', 'OVERLAP', 'PAUSED', 'NEXT TICK'],
          all.map((s) => [
            s.name,
            s.tenant,
            s.cron,
            s.timezone,
            s.template.task,
            s.overlapPolicy,
            s.paused ? 'yes' : 'no',
            s.nextTick ?? '-'
          ])
        )
      )
    })
  for (const [verb, what] of [
    ['show', 'show a schedule'],
    ['pause', 'pause a schedule: no tick fires until it is resumed'],
    ['resume', 'resume a schedule: ticks from now on fire, those passed while paused do not'],
    ['delete', 'delete a schedule (its jobs stay)']
  ] as const) {
    schedule
      .command(verb)
      .description(what)
      .argument('<name>')
      .option('--tenant <tenant>', "another tenant's schedule (an admin's token)")
      .action(async (name: string, opts: { tenant?: string }, cmd: Command) => {
        const c = client(cmd)
        const t = opts.tenant
        const call = {
          show: () => c.schedule(name, t),
          pause: () => c.pauseSchedule(name, t),
          resume: () => c.resumeSchedule(name, t),
          delete: () => c.deleteSchedule(name, t)
        }[verb]
        print(await call())
      })
  }

  program
    .command('tasks')
    .description('list the tasks the live daemons offer, and the daemons that run each')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const t = await client(cmd).tasks()
      if (opts.json === true) return print(t)
      const rows = t.tasks.map((x) => [x.name, x.peers.length, x.peers.join(',')])
      if (t.adHoc.length > 0) rows.push(['(ad-hoc commands)', t.adHoc.length, t.adHoc.join(',')])
      print(table(['TASK', 'DAEMONS', 'PEERS'], rows))
    })

  program
    .command('version')
    .description("print this CLI's version and, when the daemon answers, the daemon's")
    .action(async (_opts: unknown, cmd: Command) => {
      const c = client(cmd)
      print(`cli     ${version}`)
      try {
        const h = await c.health()
        print(`daemon  ${h.version}  ${h.peerId}  ${c.base}`)
      } catch (err) {
        process.stderr.write(`shoal: daemon version unknown: ${(err as Error).message}\n`)
      }
    })

  program
    .command('peers')
    .description('list the daemons of the mesh')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const peers = await client(cmd).peers()
      if (opts.json === true) return print(peers)
      print(
        table(
          ['PEER', 'NAME', 'STATE', 'RUNNING', 'CAPACITY', 'DRAINING', 'VERSION', 'API'],
          peers.map((p) => [
            p.peerId,
            p.name,
            p.state,
            p.running,
            p.capacity,
            p.draining ? 'yes' : 'no',
            p.version ?? '-',
            p.api
          ])
        )
      )
    })

  for (const [verb, what] of [
    [
      'drain',
      'drain a daemon: it claims nothing new, hands back what it queued, finishes what runs, and stays a member'
    ],
    ['undrain', 'undrain a daemon: it claims again']
  ] as const) {
    program
      .command(verb)
      .description(what)
      .argument('[peer]', 'peer id (default: the daemon --api names)', 'self')
      .action(async (peer: string, _opts: unknown, cmd: Command) => {
        const c = client(cmd)
        const p = verb === 'drain' ? await c.drain(peer) : await c.undrain(peer)
        print(`${p.name} ${p.peerId} ${p.draining ? 'draining' : 'claiming'} (${p.running} running)`)
      })
  }
}

/** Stream an answer's body to stdout, at the pace stdout takes it (an output may be gigabytes). */
async function writeOut(body: ReadableStream<Uint8Array>): Promise<void> {
  try {
    await pipeline(Readable.fromWeb(body as NodeReadableStream<Uint8Array>), process.stdout, {
      end: false
    })
  } catch (err) {
    throw new CliError(EXIT.UNREACHABLE, `the output stream broke off: ${(err as Error).message}`)
  }
}

/** A fragment's items as people read them: `7` or `4-7` (inclusive). */
function items(r: { start: number; end: number }): string {
  return r.end - r.start <= 1 ? String(r.start) : `${r.start}-${r.end - 1}`
}
