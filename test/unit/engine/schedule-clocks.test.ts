import { describe, expect, it } from 'vitest'
import { loneDaemon } from './schedule-harness.ts'

const T0 = 1_800_000_000_000
const EVERY_SECOND = { name: 's', cron: '* * * * * *', template: { task: 'echo', items: ['x'] } }

/**
 * A schedule's floor is the wall time of the daemon that created, resumed or re-timed it; it
 * merges by max and outlives a delete and re-create. Two red-team findings pull two ways: a
 * floor set by a daemon a day ahead holds the schedule back for a day, and ignoring floors past
 * a daemon's clock (tried) let a daemon whose own clock is behind fire ticks from before the
 * schedule existed. The floor is obeyed; a daemon that sees it past its clock warns once.
 */
describe('schedules and clocks that disagree', () => {
  it('created through a daemon a day ahead: nothing fires before that time, also once re-created; each daemon warns once, saying how far', async () => {
    const d = await loneDaemon(T0 + 86_400_000) // the daemon that takes the create runs a day ahead
    await d.svc.upsert(EVERY_SECOND)
    d.setNow(T0) // the right time, on the daemon that fires, and on the one the operator uses next
    await d.svc.remove('s')
    await d.svc.upsert(EVERY_SECOND)
    for (const at of [T0 + 5000, T0 + 6000]) {
      d.setNow(at)
      await d.fireDue()
    }
    expect(d.made).toEqual([])
    expect(d.warned.map((w) => [w.fields.schedule, w.fields.aheadSeconds])).toEqual([['s', 86_400 - 5]])
    expect(d.warned[0]?.msg).toMatch(/clock/)
    expect((await d.svc.get('s')).nextTick).toBe(new Date(T0 + 86_401_000).toISOString())
    // Once the real time passes it, ticks fire.
    d.setNow(T0 + 86_405_000)
    await d.fireDue()
    expect(d.made.length).toBeGreaterThan(0)
    expect(d.made.every((t) => t > T0 + 86_400_000 && t <= T0 + 86_405_000)).toBe(true)
  })

  it('a daemon 2 minutes behind the one that created it fires no tick from before the schedule existed', async () => {
    const d = await loneDaemon(T0) // the creating daemon's clock (right)
    await d.svc.upsert({ ...EVERY_SECOND, overlapPolicy: 'ALLOW' })
    // The same replica stands for the behind daemon's (the register reached it).
    for (let real = T0; real <= T0 + 90_000; real += 1000) {
      d.setNow(real - 120_000)
      await d.fireDue()
    }
    expect(d.made.filter((t) => t <= T0)).toEqual([])
  })
})
