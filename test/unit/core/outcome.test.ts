import { describe, expect, it } from 'vitest'
import { claimAfterTry, type TryResult } from '../../../src/core/outcome.ts'
import { type Claim, MAX_TRIES_KEPT, TRY_LOG_BYTES } from '../../../src/core/register.ts'

const running: Claim = {
  epoch: 4,
  holder: 'pa',
  incarnation: 1,
  seq: 1,
  attempt: 1,
  phase: 'RUNNING',
  hostLost: 0
}
const outcome = { exitCode: 0, bytes: 0, sha256: 'a'.repeat(64) }
const result = (r: Partial<TryResult>): TryResult => ({
  exitCode: 0,
  signal: null,
  timedOut: false,
  outputTooLarge: false,
  outcome,
  items: 1,
  ...r
})

describe('claim after a try', () => {
  it('exit 0 → SUCCEEDED with the outcome, at the same epoch and the next seq', () => {
    const c = claimAfterTry(running, { attempts: 3 }, result({}), 5)
    expect(c).toMatchObject({ phase: 'SUCCEEDED', epoch: 4, seq: 2, attempt: 1, finishedAt: 5 })
  })
  it('a failure with attempts left → RUNNABLE at attempt + 1', () => {
    const c = claimAfterTry(running, { attempts: 3 }, result({ exitCode: 2 }), 5)
    expect(c).toMatchObject({ phase: 'RUNNABLE', attempt: 2, reason: 'EXIT_CODE' })
  })
  it('the last attempt failing → FAILED EXIT_CODE', () => {
    const c = claimAfterTry({ ...running, attempt: 3 }, { attempts: 3 }, result({ exitCode: 2 }), 5)
    expect(c).toMatchObject({ phase: 'FAILED', attempt: 3, reason: 'EXIT_CODE' })
  })
  it('an exit code not in retryOn fails at once', () => {
    const c = claimAfterTry(running, { attempts: 3, retryOn: [9] }, result({ exitCode: 2 }), 5)
    expect(c).toMatchObject({ phase: 'FAILED', attempt: 1 })
    const r = claimAfterTry(running, { attempts: 3, retryOn: [2] }, result({ exitCode: 2 }), 5)
    expect(r).toMatchObject({ phase: 'RUNNABLE', attempt: 2 })
  })
  it('a timeout of several items splits; of one item it is a TIMEOUT failure', () => {
    expect(claimAfterTry(running, { attempts: 1 }, result({ timedOut: true, items: 4 }), 5).phase).toBe(
      'SPLIT'
    )
    expect(claimAfterTry(running, { attempts: 1 }, result({ timedOut: true, items: 1 }), 5)).toMatchObject({
      phase: 'FAILED',
      reason: 'TIMEOUT'
    })
  })
  it('onFailure bisect: a fragment of several items failing for good splits; a single item fails', () => {
    const last = { ...running, attempt: 2 }
    const bisect = { attempts: 2, onFailure: 'bisect' as const }
    expect(claimAfterTry(last, bisect, result({ exitCode: 3, items: 5 }), 5)).toMatchObject({
      phase: 'SPLIT',
      reason: 'EXIT_CODE'
    })
    expect(claimAfterTry(last, bisect, result({ exitCode: 3, items: 1 }), 5)).toMatchObject({
      phase: 'FAILED',
      reason: 'EXIT_CODE'
    })
    // Attempts left: retried first, split only once they are spent.
    expect(claimAfterTry(running, bisect, result({ exitCode: 3, items: 5 }), 5).phase).toBe('RUNNABLE')
    // Without bisect the several items fail together.
    expect(claimAfterTry(last, { attempts: 2 }, result({ exitCode: 3, items: 5 }), 5).phase).toBe('FAILED')
  })
  it('every try that ran joins the history, with its stderr tail; the history is bounded', () => {
    const withLog = (log: string) => ({ ...outcome, exitCode: 2, log })
    const r1 = claimAfterTry(
      { ...running, startedAt: 1 },
      { attempts: 3 },
      result({ exitCode: 2, outcome: withLog('boom\n') }),
      5
    )
    expect(r1.tries).toEqual([
      {
        attempt: 1,
        epoch: 4,
        holder: 'pa',
        exitCode: 2,
        reason: 'EXIT_CODE',
        startedAt: 1,
        finishedAt: 5,
        log: 'boom\n'
      }
    ])
    const ok = claimAfterTry({ ...running, attempt: 2, tries: r1.tries }, { attempts: 3 }, result({}), 9)
    expect(ok.tries?.map((t) => [t.attempt, t.reason ?? null])).toEqual([
      [1, 'EXIT_CODE'],
      [2, null]
    ])
    // A long stderr keeps its tail; a long history its newest tries.
    const long = claimAfterTry(
      running,
      { attempts: 3 },
      result({ exitCode: 2, outcome: withLog(`${'x'.repeat(5000)}END`) }),
      5
    )
    expect(long.tries?.[0]?.log).toHaveLength(TRY_LOG_BYTES)
    expect(long.tries?.[0]?.log?.endsWith('END')).toBe(true)
    const many = Array.from({ length: MAX_TRIES_KEPT }, (_, i) => ({
      attempt: i + 1,
      epoch: 1,
      holder: 'pb',
      exitCode: 1
    }))
    const next = claimAfterTry({ ...running, tries: many }, { attempts: 99 }, result({ exitCode: 1 }), 5)
    expect(next.tries).toHaveLength(MAX_TRIES_KEPT)
    expect(next.tries?.[0]?.attempt).toBe(2)
  })
  it('exit 75 (fenced write refused) records nothing and uses no attempt', () => {
    const c = claimAfterTry(running, { attempts: 1 }, result({ exitCode: 75 }), 5)
    expect(c).toMatchObject({ phase: 'RUNNABLE', attempt: 1 })
    expect(c.reason).toBeUndefined()
  })
})
