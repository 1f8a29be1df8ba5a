import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, startMesh, stopAll } from '../../scripts/lib/local-mesh.ts'
import {
  bigTask,
  fragments,
  hashOutput,
  repeatedHash,
  rss,
  submit,
  TEST_CONFIG,
  waitMeshReady,
  waitState
} from './helpers.ts'

const GIB = 1024 * 1024 * 1024

/**
 * A fragment may write 1 GiB of output under the default limits (`maxOutputBytes` 1 GiB): it is
 * kept on disk, copied to a second daemon, and served by the other daemon byte for byte, with
 * flat memory. Apart from `npm test` (`npm run test:load`): it writes 3 GiB to disk.
 */
describe('a 1 GiB output', () => {
  let mesh: DaemonProcess[] = []
  afterEach(async () => {
    await stopAll(mesh)
  })

  it('runs, is copied, and is served in full by the daemon that did not run it', async () => {
    mesh = await startMesh({
      count: 2,
      config: { ...TEST_CONFIG, tasks: { ...TEST_CONFIG.tasks, gib: bigTask(GIB) } }
    })
    const [a] = mesh as [DaemonProcess, DaemonProcess]
    await waitMeshReady(mesh.map((d) => d.api))
    const j = await submit(a.api, { task: 'gib', items: ['one-gibibyte'], timeoutSeconds: 600 })
    await waitState(a.api, j.id, 'SUCCEEDED', 600_000)
    const [f] = await fragments(a.api, j.id)
    // The daemon that did not run it serves it (from the copy made before the success).
    const server = mesh.find((d) => d.peerId !== f?.peer) as DaemonProcess
    const pid = server.child?.pid as number
    const before = rss(pid)
    let peak = before
    const sampler = setInterval(() => {
      peak = Math.max(peak, rss(pid))
    }, 100)
    try {
      const got = await hashOutput(server.api, j.id)
      expect(got).toEqual({ sha256: repeatedHash(['one-gibibyte'], GIB), bytes: GIB, length: GIB })
    } finally {
      clearInterval(sampler)
    }
    expect(peak - before).toBeLessThan(100 * 1000 * 1000)
  }, 900_000)
})
