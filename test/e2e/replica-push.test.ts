import { execFileSync } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DaemonProcess, startMesh, stopAll } from '../../scripts/lib/local-mesh.ts'
import { submitAnswer, TEST_CONFIG, waitMeshReady, waitState } from './helpers.ts'

/**
 * A submit waits for other copies at most `ackTimeoutMs`, whatever the peer it pushes to does.
 * The push once bounded only its dial: pushing to a peer whose disk refused the write could hang
 * the submit for good, and the client saw no answer at all (found with two daemons whose disks
 * flapped full and free; the second test fails on that code). A stalled peer (the first test)
 * is the case the dial's bound already covered.
 */
describe('pushing a new job to a peer that does not answer', () => {
  let mesh: DaemonProcess[] = []
  afterEach(async () => {
    for (const d of mesh) d.kill('SIGCONT')
    await stopAll(mesh)
  })

  it('answers 202 within ackTimeoutMs with the copies it has, and the job runs', async () => {
    mesh = await startMesh({ count: 2, config: { ...TEST_CONFIG, ackReplicas: 2, ackTimeoutMs: 1500 } })
    await waitMeshReady(mesh.map((d) => d.api))
    const [a, b] = mesh as [DaemonProcess, DaemonProcess]
    b.kill('SIGSTOP')
    const started = Date.now()
    const r = await submitAnswer(a.api, { task: 'echo', items: ['x', 'y'], fragmentSize: 1 })
    expect(r.status).toBe(202)
    expect(r.body?.replicas).toBe(1)
    // Generous: the point is an answer at all, not its speed.
    expect(Date.now() - started).toBeLessThan(15_000)
    b.kill('SIGCONT')
    await waitState(b.api, r.body?.id as string, 'SUCCEEDED')
  })

  it.skipIf(process.getuid?.() !== 0)(
    'a peer whose disk refuses every write: many submits, every one answered',
    async () => {
      const base = mkdtempSync(join(tmpdir(), 'shoal-push-'))
      const mnt = join(base, 'b')
      mkdirSync(mnt)
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m,nr_inodes=400', 'tmpfs', mnt])
      try {
        mesh = await startMesh({ count: 1, config: { ...TEST_CONFIG, ackReplicas: 2, ackTimeoutMs: 1500 } })
        const a = mesh[0] as DaemonProcess
        const b = new DaemonProcess({
          name: 'b',
          dataDir: mnt,
          config: { ...TEST_CONFIG, ackReplicas: 2, ackTimeoutMs: 1500 },
          bootstrap: [a.addr]
        })
        mesh.push(b)
        await b.start()
        await waitMeshReady([a.api, b.api])
        const fd = openSync(join(mnt, 'filler'), 'w')
        try {
          for (;;) writeSync(fd, Buffer.alloc(65536))
        } catch {}
        try {
          for (;;) writeSync(fd, Buffer.alloc(1))
        } catch {}
        closeSync(fd)
        try {
          for (let i = 0; ; i++) closeSync(openSync(join(mnt, `i${i}`), 'w'))
        } catch {}
        for (let i = 0; i < 40; i++) {
          const started = Date.now()
          const r = await submitAnswer(a.api, { task: 'echo', items: [`x${i}`] })
          expect(r.status).toBe(202)
          expect(Date.now() - started).toBeLessThan(15_000)
        }
      } finally {
        // b's data dir is the mount point: removed with the mount, not by stopAll.
        await stopAll(mesh, { keepData: true })
        mesh[0]?.removeData()
        mesh = []
        try {
          execFileSync('umount', ['-l', mnt])
        } catch {}
        rmSync(base, { recursive: true, force: true, maxRetries: 5 })
      }
    },
    240_000
  )
})
