import { describe, expect, it } from 'vitest'
import { newClaim } from '../../../src/core/claim.ts'
import type { Claim, FragmentRegister, JobRegister } from '../../../src/core/register.ts'
import { resolveSpec, specHashOf } from '../../../src/core/spec.ts'
import { jobView, leafFragments } from '../../../src/core/status.ts'

const spec = resolveSpec({ task: 'echo', range: { start: 0, end: 8 }, fragmentSize: 4 }, {})
const job: JobRegister = {
  id: 'j',
  tenant: 'default',
  spec,
  specHash: specHashOf(spec),
  createdAt: 0,
  cancelled: false,
  acceptedBy: 'p'
}
const running = newClaim(undefined, 'p', 1, 1, 0, 10)
const with_ = (phase: Claim['phase'], extra: Partial<Claim> = {}): FragmentRegister => ({
  top: 1,
  claim: { ...(running.claim as Claim), phase, seq: 2, finishedAt: 20, ...extra }
})

describe('job status from fragments', () => {
  it('RUNNABLE → RUNNING → SUCCEEDED', () => {
    expect(jobView(job, new Map()).state).toBe('RUNNABLE')
    expect(jobView(job, new Map([['0', running]])).state).toBe('RUNNING')
    const done = jobView(
      job,
      new Map([
        ['0', with_('SUCCEEDED')],
        ['1', with_('SUCCEEDED')]
      ])
    )
    expect(done).toMatchObject({ state: 'SUCCEEDED', startedAt: 10, finishedAt: 20 })
    expect(done.statusSummary).toEqual({ RUNNABLE: 0, RUNNING: 0, SUCCEEDED: 2, FAILED: 0, CANCELLED: 0 })
  })
  it('a failed fragment does not stop the others: RUNNING until every fragment ended, then FAILED', () => {
    const failed = with_('FAILED', { reason: 'EXIT_CODE' })
    const v = jobView(
      job,
      new Map([
        ['0', failed],
        ['1', running]
      ])
    )
    expect(v.state).toBe('RUNNING')
    expect(v.statusSummary).toMatchObject({ FAILED: 1, RUNNING: 1 })
    const ended = jobView(
      job,
      new Map([
        ['0', failed],
        ['1', with_('SUCCEEDED')]
      ])
    )
    expect(ended.state).toBe('FAILED')
  })
  it('failFast: FAILED at the first failure, the unfinished fragments CANCELLED', () => {
    const v = jobView(
      { ...job, spec: { ...job.spec, failFast: true } },
      new Map([
        ['0', with_('FAILED', { reason: 'EXIT_CODE' })],
        ['1', running]
      ])
    )
    expect(v.state).toBe('FAILED')
    expect(v.statusSummary).toMatchObject({ FAILED: 1, CANCELLED: 1, RUNNING: 0, RUNNABLE: 0 })
  })
  it('a retry lifts a cancel: the job runs again; a later cancel stands', () => {
    const frags = new Map([['0', with_('SUCCEEDED')]])
    expect(jobView({ ...job, cancelled: true }, frags).state).toBe('CANCELLED')
    expect(jobView({ ...job, cancelled: true, retries: 1 }, frags).state).toBe('RUNNING')
    expect(jobView({ ...job, cancelled: true, retries: 1, cancelledRetries: 1 }, frags).state).toBe(
      'CANCELLED'
    )
  })
  it('CANCELLED marks unfinished fragments cancelled', () => {
    const v = jobView({ ...job, cancelled: true }, new Map([['0', with_('SUCCEEDED')]]))
    expect(v.state).toBe('CANCELLED')
    expect(v.statusSummary).toMatchObject({ SUCCEEDED: 1, CANCELLED: 1 })
  })
  it('a SPLIT fragment is replaced by its children, in order', () => {
    const frags = new Map([
      ['0', with_('SPLIT')],
      ['0.1', with_('SPLIT')]
    ])
    expect(leafFragments(spec, frags).map(([p]) => p)).toEqual(['0.0', '0.1.0', '0.1.1', '1'])
    // a SUCCEEDED parent (a duplicate run that finished whole) makes its subtree moot
    frags.set('0', with_('SUCCEEDED'))
    expect(leafFragments(spec, frags).map(([p]) => p)).toEqual(['0', '1'])
  })
})
