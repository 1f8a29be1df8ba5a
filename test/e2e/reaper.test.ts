/**
 * The reaper of a restarted daemon kills what is left of its own tasks, nothing else. It once
 * sent SIGKILL to every process group id recorded in `<data-dir>/work/*.pid`, unchecked: a task
 * of a killed daemon that ended by itself leaves its file behind, and by the next start another
 * program may lead a group with that id (pid_max is 32768 here). Now the file holds the start
 * time too, and a group whose leader started at another time is left alone. The reuse is forced
 * through /proc/sys/kernel/ns_last_pid (root). Found by a red-team run.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { DaemonProcess, FAST, sleep, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { alive, client, submit, waitState } from './helpers.ts'

const isRoot = process.getuid?.() === 0

describe.skipIf(!isRoot)('restart after kill -9 (root: ns_last_pid)', () => {
  const d = new DaemonProcess({
    name: 'reaper',
    config: { ...FAST, tasks: { nap: { command: ['sh', '-c', 'sleep 2; cat'] } } }
  })
  let victim: ChildProcess | undefined
  afterAll(async () => {
    d.kill('SIGKILL')
    await d.waitExit(10_000).catch(() => null)
    if (victim?.pid !== undefined && alive(victim.pid)) process.kill(victim.pid, 'SIGKILL')
    d.removeData()
  })

  it('leaves alone a process group that merely reuses the id of a task that already ended', async () => {
    // Other tests run beside this one and create processes and threads: the id may be taken by
    // one of them before it can be forced. Then the scenario starts over with a new task.
    let pgid = 0
    for (let round = 0; round < 5 && victim?.pid !== pgid; round++) {
      if (victim?.pid !== undefined && alive(victim.pid)) process.kill(victim.pid, 'SIGKILL')
      await d.start()
      await submit(d.api, { task: 'nap', items: [`a${round}`] })
      const work = join(d.dataDir, 'work')
      const pidFile = await waitUntil(
        'the task to start',
        () => readdirSync(work).find((n) => n.endsWith('.pid')),
        10_000,
        20
      )
      pgid = Number(readFileSync(join(work, pidFile), 'utf8').split(' ')[0])
      d.kill('SIGKILL')
      await d.waitExit()
      // The orphaned task finishes by itself while the daemon is down.
      await waitUntil('the orphaned task to end', () => !alive(pgid), 10_000, 50)

      // Some unrelated program now leads a process group with that id.
      for (let i = 0; i < 20 && victim?.pid !== pgid; i++) {
        if (victim?.pid !== undefined) process.kill(victim.pid, 'SIGKILL')
        writeFileSync('/proc/sys/kernel/ns_last_pid', String(pgid - 1))
        victim = spawn('sleep', ['120'], { detached: true, stdio: 'ignore' })
      }
    }
    expect(victim?.pid).toBe(pgid)

    await d.start()
    await sleep(1000)
    expect(alive(pgid)).toBe(true)
    // (And the job still finishes.)
    const jobs = await client(d.api).jobs()
    await waitState(d.api, jobs[0]?.id as string, 'SUCCEEDED', 30_000)
  })
})
