import { constants } from 'node:fs'
import { access, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { networkInterfaces } from 'node:os'
import { dirname, join } from 'node:path'
import { describeSystemError, ShoalError, systemErrorCode } from '../core/errors.ts'
import { advertisedApiUrl } from './advertise.ts'
import { type ConfigFlags, resolveConfig, sourceOf } from './config.ts'
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
  /** The URL the API listens on. */
  api: string
  /** The API URL peers are told (see advertiseApi). */
  advertisedApi: string
  pid: number
  version: string
  name: string
}

/**
 * Run one daemon until SIGINT/SIGTERM: start the daemon then its API, write daemon.json, log
 * `ready`. The first signal leaves gracefully; resolves with the exit code: 0, or 1 when the
 * stop had errors (a last flush the disk refused). A second signal exits at once.
 */
export async function runDaemon(flags: ConfigFlags, frontend: (daemon: Daemon) => Frontend): Promise<number> {
  const { config, sources } = resolveConfig(flags)
  await prepareDataDir(config.dataDir, `dataDir${sourceOf('dataDir', sources)}`)
  const log = createLogger(config.logLevel, config.name)
  const daemon = new Daemon(config, log)
  try {
    await daemon.start()
  } catch (err) {
    throw withSource(err, sources)
  }
  const api = frontend(daemon)
  let url: string
  try {
    url = await api.listen()
  } catch (err) {
    await daemon.stop(0).catch(() => undefined)
    throw new ShoalError(
      'STARTUP_FAILED',
      `api${sourceOf('api', sources)}: cannot listen on ${config.api}: ${describeSystemError(err)}`,
      { cause: err }
    )
  }
  const advertised = advertisedApiUrl({
    bound: url,
    advertiseApi: config.advertiseApi,
    multiaddrs: daemon.multiaddrs(),
    interfaces: networkInterfaces()
  })
  daemon.setApiUrl(advertised)
  const info: ReadyInfo = {
    peerId: daemon.peerId,
    multiaddrs: daemon.multiaddrs(),
    api: url,
    advertisedApi: advertised,
    pid: process.pid,
    version: VERSION,
    name: config.name
  }
  const file = join(config.dataDir, 'daemon.json')
  // Signals are taken before anyone can learn that the daemon is ready: a SIGTERM sent right
  // after daemon.json appears must leave gracefully, not meet Node's default (die at once).
  let signals = 0
  const stopped = new Promise<number>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      signals++
      if (signals > 1) {
        log.warn({ signal: sig }, 'second signal: exiting now')
        process.exit(130)
      }
      log.info({ signal: sig }, 'leaving')
      // The API serves until the daemon has stopped, then closes whatever the stop did: a stop
      // with errors (a disk that stays full cannot take the last flush) must still close the
      // API, or its server keeps the process alive.
      const close = async (): Promise<unknown[]> => {
        const errors: unknown[] = []
        await daemon.stop().catch((err: unknown) => errors.push(err))
        await api.close().catch((err: unknown) => errors.push(err))
        await removeReadyFile(file)
        return errors
      }
      void close().then((errors) => {
        for (const err of errors) log.error({ err }, 'stop failed')
        log.info(errors.length > 0 ? 'stopped, with errors' : 'stopped')
        resolve(errors.length > 0 ? 1 : 0)
      })
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
  await writeFile(`${file}.tmp`, `${JSON.stringify(info, null, 2)}\n`)
  await rename(`${file}.tmp`, file)
  log.info(info, 'ready')
  return stopped
}

/**
 * A daemon that leaves removes its daemon.json, if it is still its own: a file left behind would
 * name a pid the system may since have given to another process (a script, or a test, that
 * signals it would hit that one). After a crash the file stays; its pid is then stale.
 */
async function removeReadyFile(file: string): Promise<void> {
  try {
    const held = JSON.parse(await readFile(file, 'utf8')) as { pid?: unknown }
    if (held.pid === process.pid) await rm(file, { force: true })
  } catch {
    // none, or not ours to judge
  }
}

/**
 * Make sure the data dir is a directory this process can write before anything starts, so a
 * wrong path is one line naming the setting (`field`) rather than a stack trace from the store.
 */
export async function prepareDataDir(dir: string, field: string): Promise<void> {
  const fail = (what: string, cause: unknown): never => {
    throw new ShoalError('STARTUP_FAILED', `${field}: ${what}`, { cause })
  }
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    const code = systemErrorCode(err)
    if (code === 'EEXIST' || code === 'ENOTDIR') fail(`${dir} is not a directory`, err)
    const why = await whyNotCreated(dir, err)
    fail(`cannot create ${dir}: ${describeSystemError(why)}`, why)
  }
  try {
    if (!(await stat(dir)).isDirectory()) fail(`${dir} is not a directory`, undefined)
    await access(dir, constants.R_OK | constants.W_OK | constants.X_OK)
  } catch (err) {
    if (err instanceof ShoalError) throw err
    fail(`cannot use ${dir}: ${describeSystemError(err)}`, err)
  }
  // access() trusts mode bits; a real write also catches read-only mounts and immutable dirs.
  const probe = join(dir, `.write-test-${process.pid}`)
  try {
    await writeFile(probe, '', { flag: 'wx' })
  } catch (err) {
    fail(`cannot write in ${dir}: ${describeSystemError(err)}`, err)
  } finally {
    await rm(probe, { force: true }).catch(() => undefined)
  }
}

/**
 * A recursive mkdir reports ENOENT for a parent it could not create, whatever the reason (a
 * read-only mount, say). Retry the first missing level on its own to learn the real cause.
 */
async function whyNotCreated(dir: string, err: unknown): Promise<unknown> {
  let child = dir
  for (let parent = dirname(dir); parent !== child; child = parent, parent = dirname(parent)) {
    const exists = await stat(parent).then(
      () => true,
      () => false
    )
    if (!exists) continue
    return mkdir(child).then(
      () => err,
      (e: unknown) => e
    )
  }
  return err
}

/** Name where a setting came from in a startup error about it ("listen (from --listen): …"). */
function withSource(err: unknown, sources: ReadonlyMap<string, string>): unknown {
  if (!(err instanceof ShoalError) || err.code !== 'STARTUP_FAILED') return err
  const key = /^(\w+): /.exec(err.message)?.[1]
  if (key === undefined || !sources.has(key)) return err
  return new ShoalError(err.code, `${key}${sourceOf(key, sources)}${err.message.slice(key.length)}`, {
    cause: err.cause
  })
}
