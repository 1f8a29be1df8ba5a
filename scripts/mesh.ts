/**
 * npm run mesh -- [N] [--config FILE] [--port-base P] [--keep]
 *
 * Starts N daemons (default 3) on loopback, the first alone and the others bootstrapped from it,
 * each with its own temp data dir. Daemon i (from 0) serves its API on port P + i and listens for
 * peers on P + 100 + i (P defaults to 7170; 0 picks free ports). Prints each daemon's API URL, then waits; on
 * Ctrl-C it stops them all (gracefully) and removes their data dirs unless --keep.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { type DaemonProcess, startMesh, stopAll } from './lib/local-mesh.ts'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    config: { type: 'string' },
    keep: { type: 'boolean', default: false },
    'port-base': { type: 'string', default: '7170' }
  }
})
const count = Number(positionals[0] ?? 3)
const portBase = Number(values['port-base'])
if (
  !Number.isInteger(count) ||
  count < 1 ||
  count > 64 ||
  !Number.isInteger(portBase) ||
  portBase < 0 ||
  portBase > 65000
) {
  process.stderr.write('usage: npm run mesh -- [N (1..64)] [--config FILE] [--port-base P] [--keep]\n')
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
    logTo: (name) => join('/tmp', `shoal-mesh-${process.pid}-${name}.log`),
    ports: portBase === 0 ? undefined : (i) => ({ apiPort: portBase + i, p2pPort: portBase + 100 + i })
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
