import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { type DaemonProcess, ROOT, startMesh, stopAll } from '../../scripts/lib/local-mesh.ts'
import { output, shoal, submit, TEST_CONFIG, waitMeshReady, waitState } from './helpers.ts'

const root = process.getuid?.() === 0
const PROBE = join(ROOT, 'test', 'fixtures', 'net-probe.mjs')
const probe = (network?: string) => ({ command: [process.execPath, PROBE], ...(network ? { network } : {}) })

/** A TCP server on a free port that accepts and closes, in the host's namespace or (with `ns`) in a named one. */
function server(ns?: string): ReturnType<typeof spawn> {
  const code = `const s=require('net').createServer((c)=>c.end()).listen(0,'127.0.0.1',()=>console.log(s.address().port))`
  const argv =
    ns === undefined
      ? [process.execPath, '-e', code]
      : ['ip', 'netns', 'exec', ns, process.execPath, '-e', code]
  return spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] })
}
/** The port it listens on, once it does. */
const up = (p: ReturnType<typeof spawn>): Promise<number> =>
  new Promise((r) => p.stdout?.once('data', (d: Buffer) => r(Number(d.toString().trim()))))

describe.skipIf(!root)('task networks (as root: network namespaces)', () => {
  let mesh: DaemonProcess[] = []
  const ns = `shoal-test-${process.pid}`
  const children: Array<ReturnType<typeof spawn>> = []
  afterEach(async () => {
    await stopAll(mesh)
    mesh = []
    for (const c of children.splice(0)) c.kill('SIGKILL')
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' })
    } catch {
      // not made
    }
  })

  it('"none" reaches neither the daemon’s API nor its p2p port, only its own loopback; a named namespace reaches what listens in it and not the host', async () => {
    execFileSync('ip', ['netns', 'add', ns])
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up'])
    const inside = server(ns)
    const outside = server()
    children.push(inside, outside)
    const [pin, pout] = await Promise.all([up(inside), up(outside)])
    mesh = await startMesh({
      count: 1,
      config: {
        ...TEST_CONFIG,
        tasks: { ...TEST_CONFIG.tasks, host: probe(), none: probe('none'), named: probe(ns) }
      }
    })
    const d = mesh[0] as DaemonProcess
    await waitMeshReady([d.api])
    const api = d.api.replace('http://', '')
    const p2p = (d.addr.match(/\/ip4\/([^/]+)\/tcp\/(\d+)/) as RegExpMatchArray).slice(1).join(':')
    const [inNs, onHost] = [`127.0.0.1:${pin}`, `127.0.0.1:${pout}`]
    const items = [api, p2p, 'own', inNs, onHost]
    const run = async (task: string): Promise<string> => {
      const j = await submit(d.api, { task, items, fragmentSize: items.length })
      await waitState(d.api, j.id, 'SUCCEEDED')
      return (await output(d.api, j.id)).text
    }
    // (a port free on the host may be the one taken in the namespace, and the other way round)
    const lines = (o: Record<string, string>) => items.map((i) => `${i} ${o[i]}\n`).join('')
    if (pin !== pout)
      expect(await run('host')).toBe(
        lines({ [api]: 'ok', [p2p]: 'ok', own: 'ok', [inNs]: 'no', [onHost]: 'ok' })
      )
    expect(await run('none')).toBe(
      lines({ [api]: 'no', [p2p]: 'no', own: 'ok', [inNs]: 'no', [onHost]: 'no' })
    )
    if (pin !== pout)
      expect(await run('named')).toBe(
        lines({ [api]: 'no', [p2p]: 'no', own: 'ok', [inNs]: 'ok', [onHost]: 'no' })
      )
  })

  it('a task kept off the host network cannot get back on it: no capabilities, tools not taken from the job’s PATH, its user kept', async () => {
    const tryEscape = [
      'sh',
      '-c',
      'nsenter --net=/proc/1/ns/net true 2>/dev/null && echo escaped || echo contained; id -u'
    ]
    const dir = mkdtempSync(join(tmpdir(), 'shoal-fake-'))
    // Fakes that skip the isolation, first on a PATH the job sets.
    for (const tool of ['unshare', 'setpriv', 'nsenter'])
      writeFileSync(
        join(dir, tool),
        '#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n',
        { mode: 0o755 }
      )
    try {
      mesh = await startMesh({
        count: 1,
        config: {
          ...TEST_CONFIG,
          tasks: {
            ...TEST_CONFIG.tasks,
            escape: { command: tryEscape, network: 'none' },
            'escape-nobody': { command: tryEscape, network: 'none', user: 'nobody' },
            none: probe('none')
          }
        }
      })
      const d = mesh[0] as DaemonProcess
      await waitMeshReady([d.api])
      const run = async (
        task: string,
        items: string[],
        env: Record<string, string> = {}
      ): Promise<string> => {
        const j = await submit(d.api, { task, items, fragmentSize: items.length, env })
        await waitState(d.api, j.id, 'SUCCEEDED')
        return (await output(d.api, j.id)).text
      }
      expect(await run('escape', ['x'])).toBe('contained\n0\n')
      const nobody = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim())
      expect(await run('escape-nobody', ['x'])).toBe(`contained\n${nobody}\n`)
      const api = d.api.replace('http://', '')
      expect(await run('none', [api], { PATH: `${dir}:/usr/sbin:/usr/bin:/sbin:/bin` })).toBe(`${api} no\n`)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a namespace that does not exist, or a module task with a network, stops the daemon at start naming the task', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-net-'))
    try {
      const start = async (tasks: Record<string, unknown>) => {
        const file = join(dir, 'config.json')
        writeFileSync(file, JSON.stringify({ tasks }))
        return shoal(['daemon', '--config', file, '--data-dir', join(dir, 'data')])
      }
      const missing = await start({ t: probe('no-such-ns') })
      expect([missing.code, missing.stderr.trim()]).toEqual([
        2,
        expect.stringMatching(
          /^shoal: config error: tasks\.t\.network: "no-such-ns" is not a network namespace/
        )
      ])
      const mod = await start({ m: { module: PROBE, network: 'none' } })
      expect([mod.code, mod.stderr.trim()]).toEqual([
        2,
        expect.stringMatching(/tasks\.m\.network: is for command tasks/)
      ])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
