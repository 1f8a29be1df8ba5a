import type { JobSummary } from '../core/api.ts'
import { isTerminalJobState } from '../core/status.ts'

/** Render rows as an aligned text table (header first). */
export function table(header: string[], rows: Array<Array<string | number | null>>): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (c === null ? '-' : String(c))))]
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)))
  return cells
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd()
    )
    .join('\n')
}

export type Progress = Pick<JobSummary, 'state' | 'fragments' | 'statusSummary' | 'startedAt' | 'finishedAt'>

/**
 * One progress line: a bar of ended fragments, the counts, rate and ETA. The rate is the job's
 * own, ended fragments over the time since its first fragment started (to its end, once ended),
 * whenever the watch began; `-` before a start or across a clock set back. A job that ended has
 * no ETA.
 */
export function progressLine(p: Progress, nowMs: number, width = 30): string {
  const s = p.statusSummary
  const done = (s.SUCCEEDED ?? 0) + (s.FAILED ?? 0) + (s.CANCELLED ?? 0)
  const total = Math.max(p.fragments, done, 1)
  const filled = Math.round((done / total) * width)
  const started = p.startedAt === null ? Number.NaN : Date.parse(p.startedAt)
  const until = p.finishedAt === null ? nowMs : Date.parse(p.finishedAt)
  const elapsedMs = until - started
  const rate = elapsedMs > 0 ? (done / elapsedMs) * 1000 : undefined
  const ended = isTerminalJobState(p.state)
  const eta =
    !ended && rate !== undefined && rate > 0 && done < total ? `${Math.ceil((total - done) / rate)}s` : '-'
  return (
    `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ` +
    `ok ${s.SUCCEEDED ?? 0} running ${s.RUNNING ?? 0} failed ${s.FAILED ?? 0} ` +
    `${rate === undefined ? '-' : rate.toFixed(1)}/s eta ${eta} ${p.state}`
  )
}
