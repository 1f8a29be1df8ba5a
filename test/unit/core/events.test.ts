import { describe, expect, it } from 'vitest'
import { eventId, formatEventId, parseEventId, resumeStep } from '../../../src/core/events.ts'

describe('SSE ids of a job', () => {
  it('round-trip through Last-Event-ID; anything else is no id', () => {
    const id = eventId(Number.MAX_SAFE_INTEGER, '{"state":"SUCCEEDED"}')
    expect(parseEventId(formatEventId(id))).toEqual(id)
    for (const bad of [undefined, '', 'x', '12', '-ab', '12-AB', '1-ab\nid: 2-cd', '12345678901234567-a'])
      expect(parseEventId(bad)).toBeUndefined()
  })

  it('a resumed stream skips the summary the client holds, waits while behind it, sends anything newer', () => {
    const seen = eventId(10, '{"done":3}')
    expect(resumeStep(undefined, eventId(0, '{}'))).toBe('send')
    expect(resumeStep(seen, eventId(10, '{"done":3}'))).toBe('skip')
    expect(resumeStep(seen, eventId(9, '{"done":2}'))).toBe('wait')
    expect(resumeStep(seen, eventId(10, '{"done":2,"running":1}'))).toBe('send') // same order, other state
    expect(resumeStep(seen, eventId(12, '{"done":4}'))).toBe('send')
  })
})
