// Tasks for `npm run bench`: a module task and a persistent ndjson worker that do nothing, or
// say when their code ran (ms since the epoch, sub-ms), to time submit → task code running.
import { createInterface } from 'node:readline'

const now = () => (performance.timeOrigin + performance.now()).toFixed(3)

export function noop() {
  return ''
}

/** Emits ten metric values per fragment (the bench's metrics section). */
export function emit(_items, ctx) {
  for (let i = 0; i < 10; i++) ctx.metric('rows', i, { kind: 'bench' })
  return ''
}

export function started() {
  return `${now()}\n`
}

// Run as a process: a persistent worker speaking ndjson.
if (process.argv[2] === 'worker') {
  for await (const line of createInterface({ input: process.stdin })) {
    const { id, items } = JSON.parse(line)
    process.stdout.write(`${JSON.stringify({ id, output: items[0] === 'started' ? `${now()}\n` : '' })}\n`)
  }
}
