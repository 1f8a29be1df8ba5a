/**
 * npm run mesh -- [N] [--config FILE] [--keep]
 *
 * Starts N daemons (default 3) on loopback, the first alone and the others bootstrapped from it,
 * each with its own temp data dir and free ports. Prints each daemon's API URL, then waits; on
 * Ctrl-C it stops them all (gracefully) and removes their data dirs unless --keep.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type DaemonProcess, startMesh, stopAll } from './lib/local-mesh.ts'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { config: { type: 'string' }, keep: { type: 'boolean', default: false } }
})
const count = Number(positionals[0] ?? 3)
if (!Number.isInteger(count) || count < 1 || count > 64) {
  process.stderr.write('usage: npm run mesh -- [N (1..64)] [--config FILE] [--keep]\n')
  process.exit(2)
}
const config =
  values.config !== undefined
    ? (JSON.parse(readFileSync(values.config, 'utf8')) as Record<string, unknown>)
    : {}

let daemons: DaemonProcess[] = []
try {
  daemons = await startMesh({
    count,
    config,
    logTo: (name) => join('/tmp', `shoal-mesh-${process.pid}-${name}.log`)
  })
} catch (err) {
  process.stderr.write(`mesh: ${(err as Error).message}\n`)
  process.exit(1)
}

process.stdout.write(`Started ${count} daemon${count > 1 ? 's' : ''}:\n`)
for (const d of daemons) {
  process.stdout.write(
    `  ${d.name}  ${d.api}  ${d.peerId}\n     data ${d.dataDir}  log /tmp/shoal-mesh-${process.pid}-${d.name}.log\n`
  )
}
process.stdout.write(
  '\nTry:  npm run shoal -- peers --api ' + daemons[0]?.api + '\nPress Ctrl-C to stop them all.\n'
)

let stopping = false
const stop = async (): Promise<void> => {
  if (stopping) return
  stopping = true
  process.stdout.write('\nStopping…\n')
  await Promise.all(daemons.map((d) => d.stop()))
  if (!values.keep) await stopAll(daemons)
  process.stdout.write(values.keep ? 'Stopped; data dirs kept.\n' : 'Stopped.\n')
  process.exit(0)
}
process.on('SIGINT', () => void stop())
process.on('SIGTERM', () => void stop())
// If a daemon dies on its own, say so (the others keep running).
for (const d of daemons) {
  d.child?.once('exit', (code, signal) => {
    if (!stopping) process.stdout.write(`${d.name} exited (${signal ?? code})\n`)
  })
}
