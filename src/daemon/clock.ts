import { performance } from 'node:perf_hooks'
import type { Clock } from '../core/ports.ts'

/** The host's clocks and timers, behind the port the protocol code uses (core/ports.ts). */
export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  after(ms, fn) {
    if (ms <= 0) {
      const t = setImmediate(fn)
      return () => clearImmediate(t)
    }
    const t = setTimeout(fn, ms)
    return () => clearTimeout(t)
  },
  random: () => Math.random()
}
