import type { JobSummary } from '../core/api.ts'

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

export type Progress = Pick<JobSummary, 'state' | 'fragments' | 'statusSummary'>

/** One progress line: a bar of done fragments, the counts, rate and ETA. */
export function progressLine(p: Progress, elapsedMs: number, width = 30): string {
  const s = p.statusSummary
  const done = (s.SUCCEEDED ?? 0) + (s.FAILED ?? 0) + (s.CANCELLED ?? 0)
  const total = Math.max(p.fragments, done, 1)
  const filled = Math.round((done / total) * width)
  const rate = elapsedMs > 0 ? (done / elapsedMs) * 1000 : 0
  const eta = rate > 0 && done < total ? `${Math.ceil((total - done) / rate)}s` : '-'
  return (
    `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ` +
    `ok ${s.SUCCEEDED ?? 0} running ${s.RUNNING ?? 0} failed ${s.FAILED ?? 0} ` +
    `${rate.toFixed(1)}/s eta ${eta} ${p.state}`
  )
}
