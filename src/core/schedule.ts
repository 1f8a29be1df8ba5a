import { Cron } from 'croner'
import { canonical, compareStrings, hash53, sha256Hex } from './canonical.ts'
import { ShoalError } from './errors.ts'
import type { JobSpecInput } from './spec.ts'

/**
 * Schedules: cron without a singleton (docs/decisions/016-schedules.md). A schedule is a
 * replicated register; every daemon computes the same due tick from it, the job of a tick has an
 * id derived from (tenant, schedule, tick), and the daemon ranked first for the tick fires it,
 * the next after a step if the first has not, and so on. Pure: no clock, no I/O.
 */

/** What to do with a tick while jobs of earlier ticks still run. */
export type OverlapPolicy = 'SKIP' | 'ALLOW' | 'CANCEL_PREVIOUS'
export const OVERLAP_POLICIES: readonly OverlapPolicy[] = ['SKIP', 'ALLOW', 'CANCEL_PREVIOUS']

/** A missed tick older than this fires no job, when the schedule sets no deadline. */
export const DEFAULT_STARTING_DEADLINE_SECONDS = 60

/** The body of POST /v1/schedules. */
export interface ScheduleInput {
  name: string
  /** 5 fields (minute precision) or 6 (with seconds first). */
  cron: string
  /** An IANA time zone; UTC when absent. */
  timezone?: string
  template: JobSpecInput
  overlapPolicy?: OverlapPolicy
  startingDeadlineSeconds?: number
  paused?: boolean
}

/** A schedule as stored: its input with every default filled in. */
export interface ScheduleSpec {
  cron: string
  timezone: string
  template: JobSpecInput
  overlapPolicy: OverlapPolicy
  startingDeadlineSeconds: number
}

/** Ticks a register remembers as handled (the newest); older ones count as handled. */
export const HANDLED_KEPT = 64

/**
 * The replicated register of a schedule. The setting part (spec, paused, deleted) is a
 * last-writer-wins register ordered by `version` (each change writes the version it saw plus
 * one), ties broken by a hash of its canonical bytes; `floor` merges by max, `handled` by union
 * (the newest HANDLED_KEPT), `createdAt` by min. A deleted schedule stays as a tombstone, so a
 * late copy cannot bring it back, and a schedule created again under its name keeps its floor.
 */
export interface ScheduleRegister {
  id: string
  tenant: string
  name: string
  version: number
  spec: ScheduleSpec
  paused: boolean
  deleted: boolean
  /** Wall-clock ms of the first creation (min). */
  createdAt: number
  /** Wall-clock ms of the change that wrote this version (display only). */
  updatedAt: number
  /** No tick at or before it fires (ms since the epoch): the creation, the last resume. */
  floor: number
  /** Ticks handled (fired or skipped), newest last, at most HANDLED_KEPT. */
  handled: number[]
}

/** The id of a tenant's schedule: a hash of [tenant, name] (never equal to a job id: `s`). */
export function scheduleId(tenant: string, name: string): string {
  return `s${sha256Hex(canonical([tenant, name])).slice(0, 25)}`
}

/** Idempotency keys of schedule ticks' jobs start so (reserved: a plain job may not take one). */
export const SCHEDULE_KEY_PREFIX = 'schedule:'

/** The idempotency key of the job of one tick: one job per (tenant, schedule, tick). */
export function tickJobKey(name: string, tick: number): string {
  return `${SCHEDULE_KEY_PREFIX}${name}:${new Date(tick).toISOString()}`
}

/** The setting part of a register, the part ordered by version. */
function setting(r: ScheduleRegister): unknown {
  return [r.id, r.tenant, r.name, r.version, r.spec, r.paused, r.deleted, r.updatedAt]
}

/**
 * The version of a schedule's next setting: after the one it replaces, and at least the wall
 * clock (ms), so that of two changes made apart (a partition) the later one wins, as a person
 * would expect: a delete made after a pause and a resume on the other side stays a delete.
 */
export function nextScheduleVersion(old: Pick<ScheduleRegister, 'version'> | undefined, now: number): number {
  return Math.max((old?.version ?? 0) + 1, Math.floor(now))
}

/** Join of two registers of one schedule. */
export function mergeSchedule(a: ScheduleRegister, b: ScheduleRegister): ScheduleRegister {
  let winner = a
  if (b.version !== a.version) winner = b.version > a.version ? b : a
  else {
    const ca = canonical(setting(a))
    const cb = canonical(setting(b))
    const ha = hash53(ca)
    const hb = hash53(cb)
    if (ha !== hb) winner = hb < ha ? b : a
    else winner = compareStrings(cb, ca) < 0 ? b : a
  }
  const floor = Math.max(a.floor, b.floor)
  return {
    ...winner,
    createdAt: Math.min(a.createdAt, b.createdAt),
    floor,
    handled: unionHandled(a.handled, b.handled, floor)
  }
}

/**
 * The union of two sets of handled ticks, sorted: those after the floor (the floor covers the
 * rest), the newest HANDLED_KEPT. A join, with the floor merged by max.
 */
export function unionHandled(
  a: readonly number[],
  b: readonly number[],
  floor = Number.NEGATIVE_INFINITY
): number[] {
  const all = [...new Set([...a, ...b])].filter((t) => t > floor).sort((x, y) => x - y)
  return all.slice(Math.max(0, all.length - HANDLED_KEPT))
}

/**
 * How far ahead of this daemon's clock another daemon's may be: a handled tick later than that
 * (a daemon whose clock runs ahead fired it) is not allowed to push this daemon's own ticks out
 * of the register's memory.
 */
export const MAX_CLOCK_AHEAD_MS = 60_000

/**
 * How far a schedule's floor lies past this daemon's clock beyond what a clock may run ahead
 * (0: not). A floor is the wall time of the daemon that created, resumed or re-timed the schedule;
 * one from a clock a day ahead holds every tick back for a day (the floor merges by max and
 * outlives a delete and re-create). It is still obeyed: a daemon cannot tell a clock ahead there
 * from its own clock behind, and ignoring the floor would let a daemon whose clock is behind fire
 * ticks from before the schedule existed. Daemons warn of it instead.
 */
export function floorAheadMs(reg: Pick<ScheduleRegister, 'floor'>, now: number): number {
  return reg.floor > now + MAX_CLOCK_AHEAD_MS ? reg.floor - now : 0
}

/** Has this tick been handled (fired or skipped), as far as the register tells, at `now`? */
export function isHandled(
  reg: Pick<ScheduleRegister, 'floor' | 'handled'>,
  tick: number,
  now = tick
): boolean {
  if (tick <= reg.floor) return true
  if (reg.handled.includes(tick)) return true
  // Older than everything remembered, with the memory full (of ticks not from the future): long handled.
  const remembered = reg.handled.filter((t) => t <= now + MAX_CLOCK_AHEAD_MS)
  return remembered.length >= HANDLED_KEPT && tick < (remembered[0] as number)
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/

/**
 * Check a schedule's own fields and fill in the defaults (the template is checked as a job by
 * the caller). Throws INVALID_SPEC naming the field.
 */
export function resolveScheduleSpec(input: ScheduleInput): ScheduleSpec {
  if (!NAME_RE.test(input.name)) {
    throw new ShoalError(
      'INVALID_SPEC',
      'name: 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit'
    )
  }
  const timezone = input.timezone ?? 'UTC'
  if (!validTimeZone(timezone)) {
    throw new ShoalError(
      'INVALID_SPEC',
      `timezone: "${timezone}" is not an IANA time zone (e.g. Europe/Berlin)`
    )
  }
  cronOf(input.cron, timezone)
  const deadline = input.startingDeadlineSeconds ?? DEFAULT_STARTING_DEADLINE_SECONDS
  if (!Number.isFinite(deadline) || deadline < 1) {
    throw new ShoalError('INVALID_SPEC', 'startingDeadlineSeconds: must be at least 1')
  }
  if (input.template.idempotencyKey !== undefined) {
    throw new ShoalError(
      'INVALID_SPEC',
      'template.idempotencyKey: set by the schedule (one job per tick); leave it out'
    )
  }
  return {
    cron: input.cron,
    timezone,
    template: input.template,
    overlapPolicy: input.overlapPolicy ?? 'SKIP',
    startingDeadlineSeconds: deadline
  }
}

function validTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz })
    return true
  } catch {
    return false
  }
}

/** Parsed expressions, by (expression, zone): parsing is the costly part of a cron. */
const crons = new Map<string, Cron>()

/** The parsed cron of a schedule. Throws INVALID_SPEC naming `cron` when it does not parse. */
export function cronOf(expr: string, timezone: string): Cron {
  const key = `${timezone}\n${expr}`
  let c = crons.get(key)
  if (c === undefined) {
    const fields = expr.trim().split(/\s+/).length
    if (fields !== 5 && fields !== 6) {
      throw new ShoalError(
        'INVALID_SPEC',
        `cron: "${expr}" has ${fields} fields; give 5 (minute hour day month weekday) or 6 (seconds first)`
      )
    }
    try {
      c = new Cron(expr, { timezone, paused: true, mode: fields === 6 ? '6-part' : '5-part' })
    } catch (err) {
      throw new ShoalError('INVALID_SPEC', `cron: "${expr}": ${(err as Error).message}`)
    }
    // A day that never comes (31 February): refused rather than kept doing nothing.
    if (c.nextRun(new Date(0)) == null) throw new ShoalError('INVALID_SPEC', `cron: "${expr}" never fires`)
    if (crons.size > 10_000) crons.clear()
    crons.set(key, c)
  }
  return c
}

/** The first tick after `after` (ms), or null when the expression has no more. */
export function nextTick(spec: Pick<ScheduleSpec, 'cron' | 'timezone'>, after: number): number | null {
  return cronOf(spec.cron, spec.timezone).nextRun(new Date(after))?.getTime() ?? null
}

/** Most ticks looked at in one window (a cron every second over a long window). */
const MAX_WINDOW_TICKS = 256

/**
 * The ticks a schedule owes jobs now, oldest first: ticks after its floor, not handled, no older
 * than its starting deadline, and either within `windowMs` of now (the time the daemons ranked
 * for a tick take to fire it, one step each) or the latest tick of all. Older ticks were missed
 * while no daemon could fire them (every daemon down, say): they fold into the latest one, so
 * a long outage gives one job, and none once even the latest is past the deadline. `known`
 * tells whether a tick's job is already known (its id is derived from the tick).
 */
export function dueTicks(
  reg: ScheduleRegister,
  now: number,
  windowMs: number,
  known: (tick: number) => boolean = () => false
): number[] {
  if (reg.deleted || reg.paused) return []
  const cron = cronOf(reg.spec.cron, reg.spec.timezone)
  const oldest = Math.max(reg.floor, now - reg.spec.startingDeadlineSeconds * 1000 - 1)
  const ticks = new Set<number>()
  const latest = cron.previousRuns(1, new Date(now + 1))[0]?.getTime()
  if (latest !== undefined && latest > oldest) ticks.add(latest)
  let t = Math.max(oldest, now - windowMs - 1)
  for (let i = 0; i < MAX_WINDOW_TICKS; i++) {
    const next = cron.nextRun(new Date(t))?.getTime()
    if (next === undefined || next > now) break
    ticks.add(next)
    t = next
  }
  return [...ticks].filter((tick) => !isHandled(reg, tick, now) && !known(tick)).sort((x, y) => x - y)
}

/**
 * How long after its tick the daemons ranked for it have all had their turn: one step per
 * rank, a second of slack. Ticks older than that when first seen were missed.
 */
export function rankingWindowMs(claimers: number, stepMs: number): number {
  return Math.max(1, claimers) * stepMs + 1000
}

/**
 * When a daemon of the given rank (0: first) for a tick fires it, if no job of it is known by
 * then: at the tick for the first, one step later for each rank after it.
 */
export function fireAt(tick: number, rank: number, stepMs: number): number {
  return tick + rank * stepMs
}

/** The key daemons are ranked on for one tick of one schedule. */
export function tickRankKey(id: string, tick: number): string {
  return `${id}@${tick}`
}

/**
 * CANCEL_PREVIOUS across the mesh: of the jobs of schedules with that policy (`schedule` is the
 * schedule's id), those a later tick's job of the same schedule superseded — every one but the
 * newest tick's. A daemon that fires a tick cancels the earlier jobs it knows of; this finds the
 * ones it could not know then (fired elsewhere, or at the same time here), once both are known.
 */
export function supersededJobs<J extends { schedule: string; tick: number }>(jobs: Iterable<J>): J[] {
  const newest = new Map<string, number>()
  const all: J[] = []
  for (const j of jobs) {
    all.push(j)
    if (j.tick > (newest.get(j.schedule) ?? Number.NEGATIVE_INFINITY)) newest.set(j.schedule, j.tick)
  }
  return all.filter((j) => j.tick < (newest.get(j.schedule) as number))
}
