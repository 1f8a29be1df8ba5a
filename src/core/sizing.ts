/**
 * Automatic fragment size, chosen once by the accepting daemon when a job gives none, then
 * stored with the job so every daemon derives the same fragments. Pure.
 *
 * The rule:
 * 1. Spread: at most ceil(items / (4 × slots)) items per fragment, so every slot of the mesh
 *    gets about four fragments or more and a slow daemon cannot hold the job back.
 * 2. Fit: with a measured time per item for the task (at least `minSamples` fragments seen), at
 *    most a quarter of the lifespan's worth of items: floor(0.25 × timeoutSeconds / secondsPerItem).
 * 3. Without a measurement, the task's own hint (`fragmentSize` in its config), if any.
 * The smallest bound wins, and never less than 1 item. A guess that still overruns the
 * lifespan is split in two on timeout, so wrong sizes cost time, not correctness.
 */
export interface SizingInput {
  items: number
  timeoutSeconds: number
  /** Total fragment slots of the live daemons. */
  slots: number
  /** The task's hint, if configured. */
  hint?: number
  /** Measured seconds per item of earlier fragments of the same task, if any. */
  secondsPerItem?: number
  /** How many fragments the measurement rests on. */
  samples?: number
}

export const SIZING_MIN_SAMPLES = 3
export const SIZING_LIFESPAN_SHARE = 0.25

export function chooseFragmentSize(input: SizingInput): number {
  const spread = Math.ceil(input.items / (4 * Math.max(1, input.slots)))
  let bound = spread
  const measured =
    input.secondsPerItem !== undefined &&
    input.secondsPerItem > 0 &&
    (input.samples ?? 0) >= SIZING_MIN_SAMPLES
  if (measured) {
    const fit = Math.floor((SIZING_LIFESPAN_SHARE * input.timeoutSeconds) / (input.secondsPerItem as number))
    bound = Math.min(bound, fit)
  } else if (input.hint !== undefined) {
    bound = Math.min(bound, input.hint)
  }
  return Math.max(1, Math.min(bound, 100_000_000))
}

/** Exponentially weighted moving average of seconds per item (weight of the new sample). */
export function updateSecondsPerItem(previous: number | undefined, sample: number, weight = 0.2): number {
  return previous === undefined ? sample : previous + weight * (sample - previous)
}
