import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { LevelStore, storeErrorOf } from '../../../src/store/index.ts'

/** An error as abstract-level raises it: a wrapper whose cause is the binding's error. */
const wrapped = (code: string | undefined, message: string) =>
  Object.assign(new Error('Database failed to open'), {
    code: 'LEVEL_DATABASE_NOT_OPEN',
    cause: Object.assign(new Error(message), code === undefined ? {} : { code })
  })

describe('store failures, as an operator reads them', () => {
  const at = '/data/state'
  it.each([
    [
      wrapped('LEVEL_LOCKED', 'IO error: lock /data/state/LOCK: Resource temporarily unavailable'),
      'locked',
      'STORAGE_FAILED',
      /in use by another process/
    ],
    [
      wrapped('LEVEL_CORRUPTION', 'Corruption: bad block type'),
      'corrupt',
      'STORAGE_FAILED',
      /damaged \(Corruption: bad block type\)/
    ],
    [
      wrapped('LEVEL_IO_ERROR', 'IO error: /data/state/000005.log: No space left on device'),
      'full',
      'STORAGE_FULL',
      /no space left/
    ],
    [
      wrapped('LEVEL_IO_ERROR', 'IO error: /data/state/LOCK: Read-only file system'),
      'read-only',
      'STORAGE_FAILED',
      /read-only file system/
    ],
    [
      wrapped('LEVEL_IO_ERROR', 'IO error: /data/state/LOCK: Permission denied'),
      'denied',
      'STORAGE_FAILED',
      /no permission/
    ],
    [
      wrapped(
        'LEVEL_INVALID_ARGUMENT',
        'Invalid argument: /data/state: does not exist (create_if_missing is false)'
      ),
      'missing',
      'STORAGE_FAILED',
      /missing or was emptied/
    ],
    [
      wrapped(undefined, 'IO error: something else'),
      'io',
      'STORAGE_FAILED',
      /cannot open the state store \/data\/state/
    ]
  ])('%#: classified and named with the path, on one line', (err, failure, code, text) => {
    const e = storeErrorOf(err, at, 'open')
    expect(e.failure).toBe(failure)
    expect(e.code).toBe(code)
    expect(e.message).toMatch(text)
    expect(e.message).toContain(at)
    expect(e.message).not.toContain('\n')
    expect(e.cause).toBe(err)
  })

  it('notices what LevelDB said it dropped while opening (a torn record before a crash)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-notes-'))
    try {
      const store = new LevelStore(dir)
      await store.open()
      expect(await store.recoveryNotes()).toEqual([])
      await store.close()
      // What LevelDB writes to its LOG when it replays a damaged log file.
      writeFileSync(
        join(dir, 'LOG'),
        '2026/12/02-10:00:00.000 7f Recovering log #5\n2026/12/02-10:00:00.001 7f Log #5: dropping 1480 bytes; corrupted record\n2026/12/02-10:00:00.002 7f Delete type=0 #5\n'
      )
      const notes = await store.recoveryNotes()
      expect(notes).toHaveLength(1)
      expect(notes[0]).toMatch(/dropping 1480 bytes/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
