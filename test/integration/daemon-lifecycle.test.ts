import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { FAST } from '../../scripts/lib/local-mesh.ts'
import { loadConfig } from '../../src/daemon/config.ts'
import { Daemon } from '../../src/daemon/daemon.ts'

/** One daemon in this process (real libp2p on loopback, real LevelDB in a temp dir). */
function daemon(): { d: Daemon; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-life-'))
  const config = loadConfig(
    { dataDir: dir, listen: ['/ip4/127.0.0.1/tcp/0'], api: '127.0.0.1:0', ...FAST } as never,
    {}
  )
  return { d: new Daemon(config, pino({ level: 'silent' })), dir }
}

describe('a daemon has one life state; leave and close are separate and idempotent', () => {
  let cleanup: () => Promise<void> = async () => {}
  afterEach(async () => cleanup())

  it('starting → alive → leaving → left → stopped, each call answered by one promise', async () => {
    const { d, dir } = daemon()
    cleanup = async () => {
      await d.close().catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    }
    expect(d.state).toBe('starting')
    await d.start()
    expect(d.state).toBe('alive')
    const job = await d.jobs.submit({ task: 'echo', items: ['a'] } as never)

    const leaving = d.leave(0)
    expect(d.state).toBe('leaving')
    expect(d.leave(0)).toBe(leaving)
    expect(d.peers().find((p) => p.self)?.claiming).toBe(false)
    await leaving
    expect(d.state).toBe('left')
    // Left, not shut down: it still answers reads, and says it left.
    expect((await d.jobs.job(job.id)).id).toBe(job.id)
    expect(d.peers().find((p) => p.self)?.leaving).toBe(true)

    const closing = d.close()
    expect(d.close()).toBe(closing)
    await closing
    expect(d.state).toBe('stopped')
  })

  it('close without a leave first leaves at once (no grace), then shuts down', async () => {
    const { d, dir } = daemon()
    cleanup = async () => rmSync(dir, { recursive: true, force: true })
    await d.start()
    await d.close()
    expect(d.state).toBe('stopped')
    await d.stop() // a stop after close is a no-op
    expect(d.state).toBe('stopped')
  })
})
