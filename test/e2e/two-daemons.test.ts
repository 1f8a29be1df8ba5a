import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, startMesh, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import {
  fragments,
  lines,
  output,
  reapPidDir,
  submit,
  TEST_CONFIG,
  waitMeshReady,
  waitState
} from './helpers.ts'

const items = Array.from({ length: 24 }, (_, i) => `it${i}`)

/**
 * The smallest mesh: with two daemons, the death of either leaves a survivor that must take
 * over everything, whichever of them was the bootstrap and whichever accepted the job.
 */
describe('a two-daemon mesh survives the death of either daemon', () => {
  let mesh: DaemonProcess[] = []
  let pidDir = ''

  afterEach(async () => {
    await stopAll(mesh)
    reapPidDir(pidDir)
  })

  for (const victim of ['bootstrap', 'joiner'] as const) {
    it(`kill -9 of the ${victim} mid-job: the survivor finishes the job with exact output`, async () => {
      pidDir = mkdtempSync(join(tmpdir(), 'shoal-pids-'))
      // The embedded timings (not the test mesh's faster ones): the case as users run it.
      mesh = await startMesh({ count: 2, config: { tasks: TEST_CONFIG.tasks, rateLimitPerMinute: 0 } })
      await waitMeshReady(mesh.map((d) => d.api))
      const [first, second] = mesh as [DaemonProcess, DaemonProcess]
      const [dead, survivor] = victim === 'bootstrap' ? [first, second] : [second, first]
      // Submitted to the survivor; fragments on the victim stay running until it is killed.
      const j = await submit(survivor.api, {
        task: 'slow-on',
        items,
        fragmentSize: 1,
        env: { SLOW_PEER: dead.peerId, SLOW_SECONDS: '60', PID_DIR: pidDir }
      })
      await waitUntil('the victim to hold running fragments', async () =>
        (await fragments(survivor.api, j.id)).some((f) => f.peer === dead.peerId && f.state === 'RUNNING')
      )
      dead.kill('SIGKILL')
      await waitState(survivor.api, j.id, 'SUCCEEDED', 45_000)
      expect((await output(survivor.api, j.id)).text).toBe(lines(items))
      const fs = await fragments(survivor.api, j.id)
      expect(fs.every((f) => f.peer === survivor.peerId || f.state === 'SUCCEEDED')).toBe(true)
    })
  }
})
