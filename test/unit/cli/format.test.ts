import { describe, expect, it } from 'vitest'
import { type Progress, progressLine } from '../../../src/cli/format.ts'
import { emptySummary } from '../../../src/core/status.ts'

const T0 = Date.parse('2026-12-01T10:00:00.000Z')
const at = (s: number): string => new Date(T0 + s * 1000).toISOString()
const job = (over: Partial<Progress>): Progress => ({
  state: 'RUNNING',
  fragments: 100,
  statusSummary: emptySummary(),
  startedAt: at(0),
  finishedAt: null,
  ...over
})

describe('the progress line of shoal watch', () => {
  it('takes the rate from the job’s start, however late the watch attached', () => {
    // 40 fragments ended in the 20 s since the job started: 2/s, 60 left: 30 s.
    const line = progressLine(
      job({ statusSummary: { ...emptySummary(), SUCCEEDED: 40, RUNNING: 4 } }),
      T0 + 20_000
    )
    expect(line).toContain('40/100')
    expect(line).toContain(' 2.0/s eta 30s RUNNING')
  })

  it('a job that ended shows its rate over its own run and no ETA', () => {
    for (const state of ['FAILED', 'CANCELLED', 'SUCCEEDED'] as const) {
      const line = progressLine(
        job({ state, statusSummary: { ...emptySummary(), SUCCEEDED: 10, FAILED: 5 }, finishedAt: at(5) }),
        T0 + 3_600_000
      )
      expect(line).toContain(' 3.0/s eta - ')
    }
  })

  it('no rate before a start or when the clock reads before it', () => {
    expect(progressLine(job({ state: 'RUNNABLE', startedAt: null }), T0)).toContain(' -/s eta - RUNNABLE')
    expect(progressLine(job({ statusSummary: { ...emptySummary(), SUCCEEDED: 3 } }), T0 - 1000)).toContain(
      ' -/s eta - RUNNING'
    )
  })
})
