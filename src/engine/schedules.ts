import type { ScheduleSummary, SchedulesApi } from '../core/api.ts'
import { ShoalError } from '../core/errors.ts'
import { rankOf } from '../core/hrw.ts'
import type { Cancel, Clock, Log } from '../core/ports.ts'
import { isCancelled } from '../core/register.ts'
import {
  dueTicks,
  fireAt,
  floorAheadMs,
  nextScheduleVersion,
  nextTick,
  rankingWindowMs,
  resolveScheduleSpec,
  type ScheduleInput,
  type ScheduleRegister,
  scheduleId,
  supersededJobs,
  tickJobKey,
  tickRankKey,
  unionHandled
} from '../core/schedule.ts'
import { idempotentJobId } from '../core/spec.ts'
import type { Entry } from '../core/state.ts'
import { isTerminalJobState, jobViewOf } from '../core/status.ts'
import type { Mesh } from '../mesh/mesh.ts'
import type { Replica } from '../store/replica.ts'
import { type JobService, refused } from './jobs.ts'

export interface ScheduleServiceComponents {
  replica: Replica
  mesh: Mesh
  clock: Clock
  logger: Log
  jobs: JobService
}

export interface ScheduleServiceConfig {
  /** How long each daemon after the first in a tick's ranking waits before it fires the tick. */
  scheduleStepMs: number
  seams?: ScheduleSeams
}

/** Test-only seams: deliberate bugs the simulator must catch. Never set in a daemon. */
export interface ScheduleSeams {
  /** Each daemon keys a tick's job with its own id too: one job per daemon that fires a tick. */
  perDaemonKey?: boolean
  /** Nothing is due once a schedule has handled three ticks: a schedule that falls silent. */
  silentAfterThree?: boolean
}

/** The longest the firing loop sleeps: a schedule created or resumed elsewhere is seen by then. */
const MAX_SLEEP_MS = 1000
/** Ticks fired at once. */
const FIRE_PARALLEL = 16
/** Refused ticks remembered, so that each is warned of once. */
const MAX_REFUSED_TICKS = 1024
/** How often a daemon looks for jobs of CANCEL_PREVIOUS schedules that a later tick superseded. */
const SUPERSEDED_EVERY_MS = 1000

/**
 * Schedules (docs/decisions/016-schedules.md): keeps them as replicated registers, and fires
 * their ticks with no leader. Every daemon computes each schedule's due tick from the same
 * register; the job of a tick has an id derived from (tenant, schedule, tick), so daemons that
 * fire the same tick make one job; the daemon ranked first for the tick among the mesh's live
 * claimers fires at the tick, the next one step later if no job of the tick is known by then,
 * and so on. Firing records the tick in the register (`handled`), so a tick is never fired
 * again, even once its job is long compacted and forgotten.
 */
export class ScheduleService implements SchedulesApi {
  private readonly cfg: ScheduleServiceConfig
  private readonly c: ScheduleServiceComponents
  private readonly log: Log
  private timer: Cancel | undefined
  private running = false
  private stopped = false
  /** Ticks being fired here now (`id@tick`), so a slow submit is not started twice. */
  private readonly firing = new Set<string>()
  /** Schedules with nothing due before `until`, as long as their register is `reg`. */
  private readonly quiet = new Map<string, { reg: ScheduleRegister; until: number }>()
  /** Ticks this daemon could not fire and said so (`id@tick`), oldest first: said once each. */
  private readonly refusedTicks = new Set<string>()
  /** Floors past this daemon's clock already warned of (`id@floor`). */
  private readonly distrusted = new Set<string>()
  /** When this daemon last looked for superseded jobs (wall ms). */
  private supersededAt = 0

  constructor(config: ScheduleServiceConfig, components: ScheduleServiceComponents) {
    this.cfg = config
    this.c = components
    this.log = components.logger
  }

  /** Create a schedule, or replace the settings of the one of that name. */
  async upsert(
    input: ScheduleInput,
    tenant = 'default'
  ): Promise<{ schedule: ScheduleSummary; created: boolean }> {
    const spec = resolveScheduleSpec(input)
    // The template is checked as a job would be, and its fragment size fixed now, so that every
    // daemon that fires a tick makes the same job (the same spec under the tick's id).
    let template = spec.template
    try {
      const resolved = this.c.jobs.resolve(template)
      // A template past the tenant's maxItemsPerJob: every tick would be refused.
      this.c.jobs.withinItemQuota(tenant, resolved.itemCount)
      template = { ...template, fragmentSize: resolved.fragmentSize }
    } catch (err) {
      if (err instanceof ShoalError) throw new ShoalError(err.code, `template.${err.message}`)
      throw err
    }
    const id = scheduleId(tenant, input.name)
    const old = this.c.replica.state.schedules.get(id)
    const now = this.c.clock.wallNow()
    const created = old === undefined || old.deleted
    const paused = input.paused ?? false
    // No tick before the schedule existed fires, nor one from before its cron or time zone
    // changed, nor one passed while it was paused or deleted.
    const restart =
      created || old.spec.cron !== spec.cron || old.spec.timezone !== spec.timezone || (old.paused && !paused)
    const floor = restart ? Math.max(old?.floor ?? 0, now) : old.floor
    const reg: ScheduleRegister = {
      id,
      tenant,
      name: input.name,
      version: nextScheduleVersion(old, now),
      spec: { ...spec, template },
      paused,
      deleted: false,
      createdAt: old !== undefined && !old.deleted ? old.createdAt : now,
      updatedAt: now,
      floor,
      handled: (old?.handled ?? []).filter((t) => t > floor)
    }
    await this.write(reg, 'the schedule was not saved')
    this.log.info(
      { schedule: input.name, cron: spec.cron, timezone: spec.timezone },
      created ? 'schedule created' : 'schedule updated'
    )
    this.wake()
    return { schedule: this.summary(this.register(id) ?? reg), created }
  }

  /** The schedules of a tenant (every tenant's when none is given), by name. */
  list(tenant?: string): ScheduleSummary[] {
    return [...this.c.replica.state.schedules.values()]
      .filter((s) => !s.deleted && (tenant === undefined || s.tenant === tenant))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((s) => this.summary(s))
  }

  get(name: string, tenant = 'default'): ScheduleSummary {
    return this.summary(this.mustGet(name, tenant))
  }

  /** Pause: no tick fires until resumed. */
  async pause(name: string, tenant = 'default'): Promise<ScheduleSummary> {
    const reg = this.mustGet(name, tenant)
    if (reg.paused) return this.summary(reg)
    const now = this.c.clock.wallNow()
    const next = { ...reg, version: nextScheduleVersion(reg, now), paused: true, updatedAt: now }
    await this.write(next, 'the schedule was not paused')
    return this.summary(this.register(reg.id) ?? next)
  }

  /** Resume: ticks from now on fire; those passed while paused do not. */
  async resume(name: string, tenant = 'default'): Promise<ScheduleSummary> {
    const reg = this.mustGet(name, tenant)
    if (!reg.paused) return this.summary(reg)
    const now = this.c.clock.wallNow()
    const next = {
      ...reg,
      version: nextScheduleVersion(reg, now),
      paused: false,
      updatedAt: now,
      floor: Math.max(reg.floor, now),
      handled: reg.handled.filter((t) => t > Math.max(reg.floor, now))
    }
    await this.write(next, 'the schedule was not resumed')
    this.wake()
    return this.summary(this.register(reg.id) ?? next)
  }

  /** Delete: a tombstone that every daemon keeps, so no late copy brings the schedule back. */
  async remove(name: string, tenant = 'default'): Promise<ScheduleSummary> {
    const reg = this.mustGet(name, tenant)
    const now = this.c.clock.wallNow()
    const next = { ...reg, version: nextScheduleVersion(reg, now), deleted: true, updatedAt: now }
    await this.write(next, 'the schedule was not deleted')
    this.log.info({ schedule: name }, 'schedule deleted')
    return this.summary(next)
  }

  start(): void {
    this.stopped = false
    this.wake()
  }

  stop(): void {
    this.stopped = true
    this.timer?.()
    this.timer = undefined
  }

  /** Look at the schedules now (one was created or resumed). */
  wake(): void {
    if (this.stopped || this.running) return
    this.timer?.()
    this.timer = this.c.clock.after(0, () => void this.loop())
  }

  private async loop(): Promise<void> {
    this.timer = undefined
    if (this.stopped) return
    this.running = true
    let sleep = MAX_SLEEP_MS
    try {
      sleep = await this.fireDue()
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'schedule firing failed; trying again')
    } finally {
      this.running = false
    }
    if (!this.stopped)
      this.timer = this.c.clock.after(Math.max(10, Math.min(MAX_SLEEP_MS, sleep)), () => void this.loop())
  }

  /**
   * Fire every tick that is this daemon's to fire now; resolves with how long to sleep before the
   * next look (the nearest moment a tick becomes this daemon's, at most MAX_SLEEP_MS).
   */
  private async fireDue(): Promise<number> {
    const { replica, mesh, clock } = this.c
    const claimers = mesh.claimers().map((p) => ({ id: p.id, capacity: 1 }))
    const now = clock.wallNow()
    let sleep = MAX_SLEEP_MS
    // Only a daemon that takes part in the mesh (synced, claiming) fires; its peers rank it.
    if (!claimers.some((p) => p.id === mesh.peerId) || !replica.writable) return sleep
    const windowMs = rankingWindowMs(claimers.length, this.cfg.scheduleStepMs)
    // Due ticks by schedule, oldest first: one schedule's ticks are fired one after the other, so
    // the overlap policy of each sees the job of the one before (two at once both fired under SKIP).
    const ready = new Map<string, number[]>()
    for (const reg of replica.state.schedules.values()) {
      if (reg.deleted || reg.paused) continue
      const ahead = floorAheadMs(reg, now)
      if (ahead > 0 && !this.distrusted.has(`${reg.id}@${reg.floor}`)) {
        this.distrusted.add(`${reg.id}@${reg.floor}`)
        this.log.warn(
          {
            schedule: reg.name,
            floor: new Date(reg.floor).toISOString(),
            aheadSeconds: Math.round(ahead / 1000)
          },
          'the schedule starts past this daemon’s clock: a daemon whose clock runs ahead created, resumed or re-timed it (or this clock is behind); no tick fires before then: keep the hosts’ clocks in sync'
        )
      }
      // Nothing comes due before the next tick while the register stays as it was.
      const quiet = this.quiet.get(reg.id)
      if (quiet !== undefined && quiet.reg === reg && now < quiet.until) {
        sleep = Math.min(sleep, quiet.until - now)
        continue
      }
      try {
        const known = (tick: number): boolean =>
          replica.state.jobs.has(idempotentJobId(reg.tenant, tickJobKey(reg.name, tick)))
        const due =
          this.cfg.seams?.silentAfterThree === true && reg.handled.length >= 3
            ? []
            : dueTicks(reg, now, windowMs, known)
        if (due.length === 0) {
          const next = nextTick(reg.spec, now) ?? Number.POSITIVE_INFINITY
          this.quiet.set(reg.id, { reg, until: next })
          sleep = Math.min(sleep, next - now)
          continue
        }
        for (const tick of due) {
          if (this.firing.has(`${reg.id}@${tick}`)) continue
          const rank = rankOf(tickRankKey(reg.id, tick), mesh.peerId, claimers)
          const at = fireAt(tick, rank, this.cfg.scheduleStepMs)
          if (at > now) sleep = Math.min(sleep, at - now)
          else {
            const ticks = ready.get(reg.id)
            if (ticks === undefined) ready.set(reg.id, [tick])
            else ticks.push(tick)
          }
        }
      } catch (err) {
        // One schedule that cannot be evaluated does not stop the others.
        this.log.warn({ schedule: reg.name, err: (err as Error).message }, 'cannot evaluate a schedule')
      }
    }
    for (const id of this.quiet.keys()) if (!replica.state.schedules.has(id)) this.quiet.delete(id)
    // Fired a few at a time: each waits for its job's synced write and its replica's ack, and
    // one at a time many schedules would fall behind their ticks.
    const queue = [...ready]
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < queue.length) {
        const [id, ticks] = queue[next++] as [string, number[]]
        for (const tick of ticks) {
          const key = `${id}@${tick}`
          const reg = this.register(id)
          if (reg === undefined || this.firing.has(key)) continue
          this.firing.add(key)
          try {
            await this.fire(reg, tick)
          } catch (err) {
            this.log.warn({ schedule: reg.name, err: (err as Error).message }, 'cannot fire a schedule tick')
          } finally {
            this.firing.delete(key)
          }
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(FIRE_PARALLEL, queue.length) }, worker))
    if (now - this.supersededAt >= SUPERSEDED_EVERY_MS) {
      this.supersededAt = now
      await this.cancelSuperseded()
    }
    return sleep
  }

  /**
   * CANCEL_PREVIOUS holds across the mesh: a job of such a schedule still running once a later
   * tick's job is known is cancelled, also when that later tick was fired by another daemon
   * before the earlier job reached it, or here at the same time (the cancel at firing sees only
   * the jobs known then). Any daemon that knows both cancels; a cancel is idempotent.
   */
  private async cancelSuperseded(): Promise<void> {
    const state = this.c.replica.state
    const policies = new Set<string>()
    for (const s of state.schedules.values())
      if (!s.deleted && s.spec.overlapPolicy === 'CANCEL_PREVIOUS') policies.add(s.id)
    if (policies.size === 0) return
    const jobs = []
    for (const j of state.jobs.values()) {
      if (j.schedule === undefined || j.scheduledFor === undefined) continue
      const schedule = scheduleId(j.tenant, j.schedule)
      if (policies.has(schedule)) jobs.push({ job: j, schedule, tick: j.scheduledFor })
    }
    for (const { job, tick } of supersededJobs(jobs)) {
      if (isCancelled(job) || isTerminalJobState(jobViewOf(job, state.leaves(job.id)).state)) continue
      try {
        await this.c.jobs.cancel(job.id)
        this.log.info(
          { schedule: job.schedule, tick: new Date(tick).toISOString(), job: job.id },
          'schedule cancelled a job a later tick superseded (overlapPolicy CANCEL_PREVIOUS)'
        )
      } catch (err) {
        this.log.warn(
          { job: job.id, err: (err as Error).message },
          'cannot cancel a superseded job; trying again'
        )
      }
    }
  }

  /** Fire one tick of a schedule: by its overlap policy, a job, or a skip; then record the tick. */
  private async fire(reg: ScheduleRegister, tick: number): Promise<void> {
    const { jobs } = this.c
    const state = this.c.replica.state
    // The schedule's other ticks' jobs (one walk of the jobs), and those of them still running.
    const others = [...state.jobs.values()].filter(
      (j) => j.tenant === reg.tenant && j.schedule === reg.name && (j.scheduledFor ?? 0) !== tick
    )
    const running = others.filter((j) => !isTerminalJobState(jobViewOf(j, state.leaves(j.id)).state))
    const active = running.filter((j) => (j.scheduledFor ?? 0) < tick)
    // A tick fired late (its first daemons could not) while a later tick's job already runs: under
    // SKIP or CANCEL_PREVIOUS it is superseded, not a second job running beside the later one.
    const later = running.filter((j) => (j.scheduledFor ?? 0) > tick)
    // Under CANCEL_PREVIOUS a later tick's job, even one that has ended, supersedes this tick: its
    // job would only be cancelled by the sweep (cancelSuperseded) a moment after it started.
    const supersededHere =
      reg.spec.overlapPolicy === 'CANCEL_PREVIOUS' && others.some((j) => (j.scheduledFor ?? 0) > tick)
    const key = `${tickJobKey(reg.name, tick)}${this.cfg.seams?.perDaemonKey === true ? `@${this.c.mesh.peerId}` : ''}`
    let skipped = false
    if ((reg.spec.overlapPolicy !== 'ALLOW' && later.length > 0) || supersededHere) {
      skipped = true
      active.push(...later)
    } else if (active.length > 0 && reg.spec.overlapPolicy === 'SKIP') skipped = true
    else {
      if (reg.spec.overlapPolicy === 'CANCEL_PREVIOUS') {
        for (const j of active) if (!isCancelled(j)) await jobs.cancel(j.id).catch(() => undefined)
      }
      try {
        const job = await jobs.submit({ ...reg.spec.template, idempotencyKey: key }, reg.tenant, {
          schedule: reg.name,
          scheduledFor: tick
        })
        if (!job.existing)
          this.log.info(
            { schedule: reg.name, tick: new Date(tick).toISOString(), job: job.id },
            'schedule fired'
          )
      } catch (err) {
        // The tick's job was made, and deleted since: the tick is handled.
        if (!(err instanceof ShoalError && err.code === 'JOB_DELETED')) {
          // A template this daemon cannot run (its task is not here): not this daemon's tick; the
          // next in rank fires it. Anything else (a full disk, the tenant at its maxActiveJobs) is
          // tried again on the next look, until the starting deadline: said once per tick, not at
          // every look.
          const said = `${reg.id}@${tick}`
          const fields = {
            schedule: reg.name,
            tick: new Date(tick).toISOString(),
            err: (err as Error).message
          }
          if (this.refusedTicks.has(said)) this.log.debug(fields, 'cannot fire a schedule tick here yet')
          else {
            this.refusedTicks.add(said)
            if (this.refusedTicks.size > MAX_REFUSED_TICKS)
              this.refusedTicks.delete(this.refusedTicks.values().next().value as string)
            this.log.warn(
              fields,
              `cannot fire a schedule tick here; trying again until ${reg.spec.startingDeadlineSeconds} s after it`
            )
          }
          return
        }
      }
    }
    if (skipped)
      this.log.info(
        { schedule: reg.name, tick: new Date(tick).toISOString(), running: active.map((j) => j.id) },
        `schedule tick skipped: another job of the schedule still runs (overlapPolicy ${reg.spec.overlapPolicy})`
      )
    const now = this.register(reg.id) ?? reg
    if (!now.handled.includes(tick))
      await this.write({ ...now, handled: unionHandled(now.handled, [tick]) }, 'the tick was not recorded')
  }

  private register(id: string): ScheduleRegister | undefined {
    return this.c.replica.state.schedules.get(id)
  }

  private mustGet(name: string, tenant: string): ScheduleRegister {
    const reg = this.register(scheduleId(tenant, name))
    if (reg === undefined || reg.deleted)
      throw new ShoalError('SCHEDULE_NOT_FOUND', `schedule ${name} is not known`)
    return reg
  }

  private async write(reg: ScheduleRegister, what: string): Promise<void> {
    const entry: Entry = { kind: 'sched', id: reg.id, value: reg }
    const changed = await this.c.replica.applyDurably([entry]).catch((err: unknown) => {
      throw refused(err, what)
    })
    this.c.mesh.announce(changed)
  }

  private summary(reg: ScheduleRegister): ScheduleSummary {
    const now = this.c.clock.wallNow()
    const next = reg.deleted || reg.paused ? null : nextTick(reg.spec, Math.max(now, reg.floor))
    return {
      name: reg.name,
      tenant: reg.tenant,
      cron: reg.spec.cron,
      timezone: reg.spec.timezone,
      template: reg.spec.template,
      overlapPolicy: reg.spec.overlapPolicy,
      startingDeadlineSeconds: reg.spec.startingDeadlineSeconds,
      paused: reg.paused,
      createdAt: new Date(reg.createdAt).toISOString(),
      updatedAt: new Date(reg.updatedAt).toISOString(),
      nextTick: next === null ? null : new Date(next).toISOString()
    }
  }
}
