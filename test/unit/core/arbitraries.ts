import fc from 'fast-check'
import type {
  Claim,
  FinishedSummary,
  FragmentRegister,
  JobRegister,
  Phase
} from '../../../src/core/register.ts'
import { type JobSpecInput, resolveSpec, specHashOf } from '../../../src/core/spec.ts'
import type { Entry } from '../../../src/core/state.ts'

export const phaseArb = fc.constantFrom<Phase>('RUNNABLE', 'RUNNING', 'SUCCEEDED', 'SPLIT', 'FAILED')

export const claimArb: fc.Arbitrary<Claim> = fc
  .record({
    epoch: fc.integer({ min: 1, max: 4 }),
    holder: fc.constantFrom('peerA', 'peerB', 'peerC'),
    incarnation: fc.integer({ min: 1, max: 2 }),
    seq: fc.integer({ min: 1, max: 3 }),
    attempt: fc.integer({ min: 1, max: 3 }),
    phase: phaseArb,
    hostLost: fc.integer({ min: 0, max: 2 }),
    exit: fc.option(fc.integer({ min: 0, max: 2 }), { nil: undefined }),
    generation: fc.option(fc.integer({ min: 1, max: 2 }), { nil: undefined, freq: 3 })
  })
  .map(({ exit, generation, ...c }) => {
    const claim: Claim = generation === undefined ? c : { ...c, generation }
    return exit === undefined
      ? claim
      : {
          ...claim,
          outcome: { exitCode: exit, bytes: exit, sha256: 'a'.repeat(64), output: 'x'.repeat(exit) }
        }
  })

/** Well-formed registers: top is at least the claim's epoch (every writer keeps it so). */
export const registerArb: fc.Arbitrary<FragmentRegister> = fc
  .record({ top: fc.integer({ min: 0, max: 5 }), claim: fc.option(claimArb, { nil: null }) })
  .map((r) => ({ top: Math.max(r.top, r.claim?.epoch ?? 0), claim: r.claim }))

const specInputArb: fc.Arbitrary<JobSpecInput> = fc.record({
  task: fc.constantFrom('echo', 'noop'),
  items: fc.array(fc.string({ maxLength: 3 }), { minLength: 1, maxLength: 5 }),
  fragmentSize: fc.integer({ min: 1, max: 3 })
})

export const finishedArb: fc.Arbitrary<FinishedSummary> = fc
  .record({
    state: fc.constantFrom<FinishedSummary['state']>('SUCCEEDED', 'FAILED', 'CANCELLED'),
    n: fc.integer({ min: 0, max: 3 }),
    compactedAt: fc.integer({ min: 0, max: 5 }),
    output: fc.option(fc.array(fc.string({ maxLength: 2 }), { maxLength: 2 }), { nil: undefined })
  })
  .map(({ n, output, ...f }) => ({
    ...f,
    statusSummary: { RUNNABLE: 0, RUNNING: 0, SUCCEEDED: n, FAILED: 0, CANCELLED: 0 },
    fragments: n,
    startedAt: null,
    finishedAt: n,
    ...(output !== undefined ? { output } : {})
  }))

export const jobArb: fc.Arbitrary<JobRegister> = fc
  .record({
    spec: specInputArb,
    createdAt: fc.integer({ min: 0, max: 10 }),
    cancelled: fc.boolean(),
    acceptedBy: fc.constantFrom('peerA', 'peerB'),
    finished: fc.option(finishedArb, { nil: undefined, freq: 3 }),
    retries: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
    cancelledRetries: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
    deleted: fc.option(fc.integer({ min: 0, max: 10 }), { nil: undefined, freq: 3 })
  })
  .map(({ spec, finished, retries, cancelledRetries, deleted, ...rest }) => {
    const resolved = resolveSpec(spec, {})
    const job: JobRegister = {
      id: 'job1',
      tenant: 'default',
      spec: resolved,
      specHash: specHashOf(resolved),
      ...rest
    }
    if (finished !== undefined) job.finished = finished
    // A deleted job always carries a summary (the wire refuses one without).
    if (finished !== undefined && deleted !== undefined) job.deleted = deleted
    if (retries !== undefined) job.retries = retries
    if (cancelledRetries !== undefined) job.cancelledRetries = cancelledRetries
    return job
  })

export const entryArb: fc.Arbitrary<Entry> = fc.oneof(
  jobArb.map((value): Entry => ({ kind: 'job', id: value.id, value })),
  fc
    .record({
      job: fc.constantFrom('job1', 'job2'),
      path: fc.constantFrom('0', '1', '1.0', '1.1'),
      value: registerArb
    })
    .map((r): Entry => ({ kind: 'frag', job: r.job, specHash: 'f'.repeat(32), path: r.path, value: r.value }))
)
