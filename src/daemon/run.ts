import { rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type ConfigFlags, loadConfig } from './config.ts'
import { Daemon, VERSION } from './daemon.ts'
import { createLogger } from './logger.ts'

/** The HTTP front end, built above this layer and handed in (api/ imports daemon/, not back). */
export interface Frontend {
  /** Listen; resolves with the URL it serves. */
  listen(): Promise<string>
  close(): Promise<void>
}

/** What `<data-dir>/daemon.json` and the `ready` log line hold. */
export interface ReadyInfo {
  peerId: string
  multiaddrs: string[]
  api: string
  pid: number
  version: string
  name: string
}

/**
 * Run one daemon until SIGINT/SIGTERM: start the daemon then its API, write daemon.json, log
 * `ready`. The first signal leaves gracefully (exit 0); a second exits at once.
 */
export async function runDaemon(flags: ConfigFlags, frontend: (daemon: Daemon) => Frontend): Promise<void> {
  const config = loadConfig(flags)
  const log = createLogger(config.logLevel, config.name)
  const daemon = new Daemon(config, log)
  await daemon.start()
  const api = frontend(daemon)
  let url: string
  try {
    url = await api.listen()
  } catch (err) {
    await daemon.stop(0).catch(() => undefined)
    throw new Error(`cannot listen on ${config.api}: ${(err as Error).message}`, { cause: err })
  }
  daemon.setApiUrl(url)
  const info: ReadyInfo = {
    peerId: daemon.peerId,
    multiaddrs: daemon.multiaddrs(),
    api: url,
    pid: process.pid,
    version: VERSION,
    name: config.name
  }
  const file = join(config.dataDir, 'daemon.json')
  await writeFile(`${file}.tmp`, `${JSON.stringify(info, null, 2)}\n`)
  await rename(`${file}.tmp`, file)
  log.info(info, 'ready')

  let signals = 0
  await new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++
      if (signals > 1) {
        log.warn({ signal: sig }, 'second signal: exiting now')
        process.exit(130)
      }
      log.info({ signal: sig }, 'leaving')
      const close = async (): Promise<void> => {
        await daemon.stop()
        await api.close()
      }
      close()
        .catch((err: unknown) => log.error({ err }, 'stop failed'))
        .finally(() => {
          log.info('stopped')
          resolve()
        })
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}
