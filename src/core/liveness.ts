/**
 * Failure detection, judged by each observer on its own monotonic clock: suspect after
 * `suspectMs` of silence, dead after another `suspectMs`. Never replicated, never compared
 * across daemons.
 */
export type Liveness = 'alive' | 'suspect' | 'dead' | 'left'

/** Every liveness, in the order a peer goes through them. */
export const LIVENESS: readonly Liveness[] = ['alive', 'suspect', 'dead', 'left']

export function judge(silenceMs: number, suspectMs: number, leaving: boolean): Liveness {
  if (leaving) return 'left'
  if (silenceMs < suspectMs) return 'alive'
  if (silenceMs < 2 * suspectMs) return 'suspect'
  return 'dead'
}

/**
 * Local health (Lifeguard): when this observer's own timer fired late by more than `toleranceMs`,
 * it was stalled itself, and the silence it measured says nothing about others.
 */
export function wasStalled(expectedAt: number, firedAt: number, toleranceMs: number): boolean {
  return firedAt - expectedAt > toleranceMs
}
