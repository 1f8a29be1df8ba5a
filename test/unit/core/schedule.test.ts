import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { canonical } from '../../../src/core/canonical.ts'
import { ShoalError } from '../../../src/core/errors.ts'
import { rankPeers } from '../../../src/core/hrw.ts'
import {
  dueTicks,
  fireAt,
  floorAheadMs,
  HANDLED_KEPT,
  isHandled,
  MAX_CLOCK_AHEAD_MS,
  mergeSchedule,
  nextScheduleVersion,
  nextTick,
  resolveScheduleSpec,
  type ScheduleInput,
  type ScheduleRegister,
  scheduleId,
  supersededJobs,
  tickJobKey,
  tickRankKey,
  unionHandled
} from '../../../src/core/schedule.ts'
import { ReplicatedState } from '../../../src/core/state.ts'
import { checkEntry } from '../../../src/core/wire.ts'

const T = Date.parse('2026-06-01T12:00:00Z')

function reg(over: Partial<ScheduleRegister> = {}): ScheduleRegister {
  return {
    id: scheduleId('default', 'nightly'),
    tenant: 'default',
    name: 'nightly',
    version: 1,
    spec: {
      cron: '*/10 * * * * *',
      timezone: 'UTC',
      template: { task: 'echo', items: ['x'], fragmentSize: 1 },
      overlapPolicy: 'SKIP',
      startingDeadlineSeconds: 60
    },
    paused: false,
    deleted: false,
    createdAt: T,
    updatedAt: T,
    floor: T,
    handled: [],
    ...over
  }
}

const regArb = fc
  .record({
    version: fc.integer({ min: 1, max: 4 }),
    cron: fc.constantFrom('*/10 * * * * *', '0 2 * * *', '30 2 * * *'),
    policy: fc.constantFrom('SKIP' as const, 'ALLOW' as const, 'CANCEL_PREVIOUS' as const),
    paused: fc.boolean(),
    deleted: fc.boolean(),
    createdAt: fc.integer({ min: T, max: T + 5 }),
    updatedAt: fc.integer({ min: T, max: T + 5 }),
    floor: fc.integer({ min: T, max: T + 100_000 }),
    handled: fc.uniqueArray(fc.integer({ min: 0, max: 100 }), { maxLength: 80 })
  })
  .map((r) =>
    reg({
      version: r.version,
      spec: { ...reg().spec, cron: r.cron, overlapPolicy: r.policy },
      paused: r.paused,
      deleted: r.deleted,
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
      floor: r.floor,
      handled: unionHandled(
        [],
        r.handled.map((s) => T + s * 1000),
        r.floor
      )
    })
  )

const eq = (a: unknown, b: unknown): void => {
  expect(canonical(a)).toBe(canonical(b))
}

describe('schedule register merge is a join', () => {
  it('is commutative, associative and idempotent', () => {
    fc.assert(
      fc.property(regArb, regArb, regArb, (a, b, c) => {
        eq(mergeSchedule(a, b), mergeSchedule(b, a))
        eq(mergeSchedule(mergeSchedule(a, b), c), mergeSchedule(a, mergeSchedule(b, c)))
        eq(mergeSchedule(a, a), a)
      })
    )
  })

  it('keeps the settings of the higher version, the highest floor, every handled tick and the first creation', () => {
    const old = reg({ version: 1, floor: T + 500, handled: [T + 1000], createdAt: T })
    const paused = reg({ version: 2, paused: true, floor: T, handled: [T + 2000], createdAt: T + 3 })
    const m = mergeSchedule(old, paused)
    expect(m.paused).toBe(true)
    expect(m.floor).toBe(T + 500)
    expect(m.handled).toEqual([T + 1000, T + 2000])
    expect(m.createdAt).toBe(T)
  })

  it('remembers the newest handled ticks, and counts older ones as handled', () => {
    const many = Array.from({ length: HANDLED_KEPT + 10 }, (_, i) => T + (i + 1) * 1000)
    const h = unionHandled(many.slice(0, 40), many.slice(30))
    expect(h).toEqual(many.slice(10))
    const r = reg({ handled: h })
    const now = many.at(-1) as number
    expect(isHandled(r, T + 5000, now)).toBe(true) // forgotten, older than all remembered
    expect(isHandled(r, now, now)).toBe(true)
    expect(isHandled(r, now + 1000, now)).toBe(false)
    expect(isHandled(reg({ handled: [T + 9000] }), T + 5000, now)).toBe(false) // memory not full
  })

  it('a deleted schedule stays deleted when an older copy arrives', () => {
    const state = new ReplicatedState()
    const id = reg().id
    state.merge({ kind: 'sched', id, value: reg({ version: 3, deleted: true }) })
    expect(state.merge({ kind: 'sched', id, value: reg({ version: 2 }) })).toBeNull()
    expect(state.schedules.get(id)?.deleted).toBe(true)
    // anti-entropy finds it like a job: it has a digest and its own entries
    expect(state.jobIds()).toContain(id)
    expect(state.entriesOf(id)).toHaveLength(1)
  })
})

describe('due ticks', () => {
  const W = 4000
  it('a tick is due once it passed, until it is handled or its job is known', () => {
    const r = reg({ floor: T })
    expect(dueTicks(r, T + 5_000, W)).toEqual([]) // the first tick after T is T+10 s
    expect(dueTicks(r, T + 10_000, W)).toEqual([T + 10_000])
    expect(dueTicks(r, T + 12_000, W)).toEqual([T + 10_000])
    expect(dueTicks({ ...r, handled: [T + 10_000] }, T + 12_000, W)).toEqual([])
    expect(dueTicks(r, T + 12_000, W, (t) => t === T + 10_000)).toEqual([])
  })

  it('every tick within the ranking window is owed on its own (one whose first daemon died is not lost)', () => {
    const r = reg({ floor: T, spec: { ...reg().spec, cron: '* * * * * *' } })
    expect(dueTicks(r, T + 3_500, W)).toEqual([T + 1000, T + 2000, T + 3000])
    expect(dueTicks({ ...r, handled: [T + 2000, T + 3000] }, T + 3_500, W)).toEqual([T + 1000])
  })

  it('ticks missed beyond the window fold into the latest; past the deadline none', () => {
    const r = reg({ floor: T, spec: { ...reg().spec, startingDeadlineSeconds: 30 } })
    // ticks T+10 … T+50 missed; at T+55 only the latest, T+50 (5 s old), is owed
    expect(dueTicks(r, T + 55_000, W)).toEqual([T + 50_000])
    // the latest missed tick 35 s old, past a 30 s deadline: nothing
    const hourly = reg({ floor: T, spec: { ...reg().spec, cron: '0 * * * *', startingDeadlineSeconds: 30 } })
    expect(dueTicks(hourly, T + 3_600_000 + 35_000, W)).toEqual([])
    expect(dueTicks(hourly, T + 3_600_000 + 25_000, W)).toEqual([T + 3_600_000])
  })

  it('nothing at or before the floor; paused and deleted schedules owe nothing', () => {
    expect(dueTicks(reg({ floor: T + 10_000 }), T + 12_000, W)).toEqual([])
    expect(dueTicks(reg({ paused: true }), T + 10_000, W)).toEqual([])
    expect(dueTicks(reg({ deleted: true }), T + 10_000, W)).toEqual([])
  })

  it('ranks: each daemon fires one step after the one before it, the same order everywhere', () => {
    const peers = ['a', 'b', 'c'].map((id) => ({ id, capacity: 1 }))
    const key = tickRankKey(reg().id, T + 10_000)
    const order = rankPeers(key, peers).map((p) => p.id)
    expect(rankPeers(key, [...peers].reverse()).map((p) => p.id)).toEqual(order)
    expect([0, 1, 2].map((r) => fireAt(T, r, 1000))).toEqual([T, T + 1000, T + 2000])
  })

  it('one job id per (tenant, schedule, tick)', () => {
    expect(tickJobKey('nightly', T)).toBe('schedule:nightly:2026-06-01T12:00:00.000Z')
    expect(scheduleId('a', 'x')).not.toBe(scheduleId('b', 'x'))
    expect(scheduleId('a', 'x')).toMatch(/^s[0-9a-f]{25}$/)
  })

  it('CANCEL_PREVIOUS: every job but the newest tick’s of its schedule is superseded, schedule by schedule', () => {
    const jobs = [
      { id: 'a2', schedule: 'a', tick: T + 2000 },
      { id: 'a1', schedule: 'a', tick: T + 1000 },
      { id: 'b1', schedule: 'b', tick: T + 1000 },
      { id: 'a3', schedule: 'a', tick: T + 3000 },
      { id: 'b0', schedule: 'b', tick: T }
    ]
    expect(supersededJobs(jobs).map((j) => j.id)).toEqual(['a2', 'a1', 'b0'])
    expect(supersededJobs([{ id: 'c', schedule: 'c', tick: T }])).toEqual([])
  })
})

describe('time zones: 02:30 Europe/Berlin around daylight saving time (as the README says)', () => {
  const berlin = { cron: '30 2 * * *', timezone: 'Europe/Berlin' }
  it('spring forward (2026-03-29, 02:00 → 03:00): 02:30 does not exist; it fires once, at 03:00 CEST', () => {
    const t = nextTick(berlin, Date.parse('2026-03-28T12:00:00Z'))
    expect(new Date(t as number).toISOString()).toBe('2026-03-29T01:00:00.000Z') // 03:00 CEST
    const after = nextTick(berlin, t as number)
    expect(new Date(after as number).toISOString()).toBe('2026-03-30T00:30:00.000Z') // 02:30 CEST
    // With a fake clock: due once that day, at 03:00 local.
    const r = reg({ floor: Date.parse('2026-03-28T12:00:00Z'), spec: { ...reg().spec, ...berlin } })
    expect(dueTicks(r, Date.parse('2026-03-29T00:59:59Z'), 4000)).toEqual([])
    expect(dueTicks(r, Date.parse('2026-03-29T01:00:30Z'), 4000)).toEqual([t])
  })

  it('fall back (2026-10-25, 03:00 → 02:00): 02:30 happens twice; it fires once, at the first (CEST)', () => {
    const t = nextTick(berlin, Date.parse('2026-10-24T12:00:00Z'))
    expect(new Date(t as number).toISOString()).toBe('2026-10-25T00:30:00.000Z') // 02:30 CEST
    const after = nextTick(berlin, t as number)
    expect(new Date(after as number).toISOString()).toBe('2026-10-26T01:30:00.000Z') // next day, 02:30 CET
    const r = reg({ floor: t as number, spec: { ...reg().spec, ...berlin } })
    // the second 02:30 (CET, 01:30Z) is not a tick
    expect(dueTicks(r, Date.parse('2026-10-25T01:30:30Z'), 4000)).toEqual([])
  })
})

describe('bad schedules are refused, naming the field', () => {
  const ok: ScheduleInput = { name: 'n', cron: '* * * * *', template: { task: 'echo', items: ['x'] } }
  const refused = (input: ScheduleInput): string => {
    try {
      resolveScheduleSpec(input)
    } catch (err) {
      expect(err).toBeInstanceOf(ShoalError)
      return (err as Error).message
    }
    throw new Error('accepted')
  }
  it.each([
    [{ cron: '61 * * * *' }, /^cron: /],
    [{ cron: '* * *' }, /^cron: .*3 fields/],
    [{ cron: '* * * * * * * *' }, /^cron: /],
    [{ timezone: 'Mars/Olympus' }, /^timezone: /],
    [{ startingDeadlineSeconds: 0 }, /^startingDeadlineSeconds: /],
    [{ name: '../x' }, /^name: /],
    [{ template: { task: 'echo', items: ['x'], idempotencyKey: 'k' } }, /^template\.idempotencyKey: /]
  ])('%j', (over, msg) => {
    expect(refused({ ...ok, ...over } as ScheduleInput)).toMatch(msg)
  })
  it('fills in the defaults', () => {
    expect(resolveScheduleSpec(ok)).toEqual({
      cron: '* * * * *',
      timezone: 'UTC',
      template: ok.template,
      overlapPolicy: 'SKIP',
      startingDeadlineSeconds: 60
    })
  })
})

describe('schedule registers on the wire', () => {
  it('a valid register passes; a forged id or a bad cron does not', () => {
    const r = reg()
    expect(checkEntry({ kind: 'sched', id: r.id, value: r })).toEqual({ kind: 'sched', id: r.id, value: r })
    const forged = { ...r, id: scheduleId('other', 'nightly') }
    expect(() => checkEntry({ kind: 'sched', id: forged.id, value: forged })).toThrow()
    const badCron = { ...r, spec: { ...r.spec, cron: '99 * * * *' } }
    expect(() => checkEntry({ kind: 'sched', id: r.id, value: badCron })).toThrow()
  })
})

describe('faults a red-team review found', () => {
  const now = T + 100_000
  const everySecond = (over: Partial<ScheduleRegister> = {}): ScheduleRegister =>
    reg({ floor: now - 10_000, spec: { ...reg().spec, cron: '* * * * * *' }, ...over })

  it('a floor past this daemon’s clock is obeyed (its clock may be the one behind), and said how far', () => {
    const far = everySecond({ floor: now + 86_400_000 })
    expect(dueTicks(far, now, 3000)).toEqual([])
    expect(isHandled(far, now - 1000, now)).toBe(true)
    expect(floorAheadMs(far, now)).toBe(86_400_000)
    // Within what a clock may run ahead: nothing to say.
    expect(floorAheadMs(everySecond({ floor: now + MAX_CLOCK_AHEAD_MS }), now)).toBe(0)
  })

  it('ticks handled by a daemon whose clock runs ahead do not silence the others', () => {
    const ahead = Array.from({ length: HANDLED_KEPT }, (_, i) => now + 3_600_000 + i * 1000)
    const merged = mergeSchedule(everySecond(), everySecond({ handled: ahead }))
    expect(merged.handled).toHaveLength(HANDLED_KEPT) // the memory is full of future ticks
    expect(dueTicks(merged, now, 4000)).toContain(now) // yet this daemon's tick is owed
    expect(isHandled(merged, now - 5000, now)).toBe(false) // and "older than the memory" ignores them
    // a tick close ahead (within the allowance) still counts as remembered
    const near = Array.from({ length: HANDLED_KEPT }, (_, i) => now - 10_000 + i * 1000)
    expect(near.every((t) => t <= now + MAX_CLOCK_AHEAD_MS)).toBe(true)
    expect(isHandled(reg({ handled: near }), now - 20_000, now)).toBe(true)
  })

  it('a floor covers the handled ticks before it: a re-created schedule starts with a clean memory', () => {
    const m = mergeSchedule(
      reg({ floor: T, handled: [T + 1000, T + 2000, T + 9000] }),
      reg({ floor: T + 5000, handled: [] })
    )
    expect(m.handled).toEqual([T + 9000])
  })

  it('a later change wins over more changes made earlier elsewhere (a partition)', () => {
    const created = nextScheduleVersion(undefined, T)
    // one side pauses and resumes at once; the other deletes a few seconds later
    const paused = nextScheduleVersion({ version: created }, T + 1000)
    const resumed = nextScheduleVersion({ version: paused }, T + 1001)
    const deleted = nextScheduleVersion({ version: created }, T + 5000)
    const m = mergeSchedule(reg({ version: resumed }), reg({ version: deleted, deleted: true }))
    expect(m.deleted).toBe(true)
    // and versions still rise when the clock does not (two changes in one millisecond)
    expect(nextScheduleVersion({ version: T + 7 }, T)).toBe(T + 8)
  })

  it('the wire refuses times and versions past what a Date holds, and handled ticks the floor covers', () => {
    for (const over of [
      { version: 9e15 },
      { floor: 9e15 },
      { updatedAt: 9e15 },
      { createdAt: 9e15 },
      { handled: [9e15] },
      { handled: [T - 1000] } // at or before the floor
    ]) {
      const r = reg(over)
      expect(() => checkEntry({ kind: 'sched', id: r.id, value: r }), JSON.stringify(over)).toThrow()
    }
  })

  it('a cron that never fires is refused', () => {
    expect(() =>
      resolveScheduleSpec({ name: 'n', cron: '0 0 31 2 *', template: { task: 'echo', items: ['x'] } })
    ).toThrow(/^cron: .*never fires/)
    expect(() =>
      resolveScheduleSpec({ name: 'n', cron: '0 0 31 4,6,9,11 *', template: { task: 'echo', items: ['x'] } })
    ).toThrow(/never fires/)
  })
})
