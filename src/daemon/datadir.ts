import { randomUUID } from 'node:crypto'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { ShoalError } from '../core/errors.ts'
import { LevelStore, StoreError, storeErrorOf } from '../store/index.ts'

/** The state store's folder in a data dir. */
export const STATE_DIR = 'state'
/**
 * A file beside the store naming the store this data dir holds (the same id is kept in the
 * store's metadata). A store that opens without it, or with another id, was emptied or replaced.
 */
export const STORE_ID_FILE = 'state.id'

/**
 * Open a data dir's state store, which also takes the data dir's lock (LevelDB's LOCK, held
 * until the process ends, whatever the way): nothing else in the data dir is touched before.
 *
 * Refuses to start, with one line naming the path, the cause and the remedy, when the store
 * is locked by another process, damaged, missing, or opened empty where it held state. With
 * `resetState` a store that cannot be used is moved aside (kept for inspection) and a new one
 * is started: the daemon then holds nothing until it has synced from its peers.
 */
export async function openStateStore(
  dataDir: string,
  options: { resetState: boolean; log: Logger }
): Promise<LevelStore> {
  const location = join(dataDir, STATE_DIR)
  const idFile = join(dataDir, STORE_ID_FILE)
  let knownId = await readId(idFile)
  let store = new LevelStore(location, { createIfMissing: knownId === undefined })
  let problem: StoreError | undefined
  try {
    await store.open()
    const id = await store.getMeta<string>('storeId')
    if (knownId !== undefined && id !== knownId) {
      problem = new StoreError(
        'missing',
        location,
        `the state store ${location} opened empty or replaced (store id ${id ?? 'none'}, expected ${knownId}), yet this data dir held state`
      )
      await store.close()
    }
  } catch (err) {
    problem = storeErrorOf(err, location, 'open')
    // Another daemon holds the lock: never touch its data dir, not even with resetState.
    if (problem.failure === 'locked') throw startupError(problem)
  }
  if (problem !== undefined) {
    if (!options.resetState || problem.failure === 'full' || problem.failure === 'read-only')
      throw startupError(problem)
    const aside = `${location}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`
    await rename(location, aside).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    })
    await rm(idFile, { force: true })
    options.log.warn(
      { problem: problem.message, movedTo: aside },
      'state store reset: starting empty, will sync from peers before claiming'
    )
    knownId = undefined
    store = new LevelStore(location, { createIfMissing: true })
    await store.open()
  }
  if (knownId === undefined) {
    const existing = await store.getMeta<string>('storeId')
    const id = existing ?? randomUUID()
    if (existing === undefined) await store.putMeta('storeId', id, { sync: true })
    await writeFile(`${idFile}.tmp`, `${id}\n`, { mode: 0o600 })
    await rename(`${idFile}.tmp`, idFile)
  }
  const notes = await store.recoveryNotes()
  if (notes.length > 0) {
    options.log.warn(
      { location, leveldb: notes },
      'the state store dropped damaged records while opening (a torn write before a crash?); peers will resend what they hold'
    )
  }
  return store
}

async function readId(file: string): Promise<string | undefined> {
  try {
    const text = (await readFile(file, 'utf8')).trim()
    return text === '' ? undefined : text
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
}

/** A store problem at start, as one line for the operator: what, where, and what to do. */
export function startupError(problem: StoreError): ShoalError {
  const remedy: Record<StoreError['failure'], string> = {
    locked: 'stop the other daemon or give this one another --data-dir',
    corrupt:
      'to start over from what the peers hold, run once with --reset-state (the damaged store is kept aside)',
    missing:
      'to start over from what the peers hold, run once with --reset-state (what is left is kept aside)',
    full: 'free space on its file system, then start again',
    'read-only': 'give the daemon a writable --data-dir',
    denied: 'give the daemon a --data-dir it may write',
    io: 'check the disk; to start over from what the peers hold, run once with --reset-state'
  }
  return new ShoalError('STARTUP_FAILED', `${problem.message}: ${remedy[problem.failure]}`, {
    cause: problem
  })
}
