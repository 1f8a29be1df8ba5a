import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { resolveCommand } from '../../../src/worker/command.ts'
import {
  chooseContainment,
  ownDir,
  parentCgroupName,
  parseMountinfo,
  parseProcCgroup
} from '../../../src/worker/containment.ts'

const HYBRID_MOUNTINFO = `22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
`

describe('parseMountinfo', () => {
  it('finds the v1 hierarchies with their controllers and the v2 mount', () => {
    const mounts = parseMountinfo(HYBRID_MOUNTINFO)
    expect(mounts).toEqual([
      { version: 1, mountPoint: '/sys/fs/cgroup/cpu', root: '/', controllers: ['cpu'] },
      { version: 1, mountPoint: '/sys/fs/cgroup/freezer', root: '/', controllers: ['freezer'] },
      { version: 1, mountPoint: '/sys/fs/cgroup/pids', root: '/', controllers: ['pids'] },
      { version: 1, mountPoint: '/sys/fs/cgroup/systemd', root: '/', controllers: [] },
      { version: 2, mountPoint: '/sys/fs/cgroup/unified', root: '/', controllers: [] }
    ])
  })

  it('reads a v2-only host and unescapes paths', () => {
    const text = '30 23 0:26 /kube\\040pod /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n'
    expect(parseMountinfo(text)).toEqual([
      { version: 2, mountPoint: '/sys/fs/cgroup', root: '/kube pod', controllers: [] }
    ])
  })
})

describe('parseProcCgroup and ownDir', () => {
  it('reads the v2 path and the path of each v1 controller', () => {
    const own = parseProcCgroup(
      '9:name=systemd:/\n8:pids:/a/b\n4:cpu,cpuacct:/c\n0::/system.slice/shoal.service\n'
    )
    expect(own.v2).toBe('/system.slice/shoal.service')
    expect(own.v1).toEqual({ 'name=systemd': '/', pids: '/a/b', cpu: '/c', cpuacct: '/c' })
  })

  it('maps the own path under the mount, honouring the mount root', () => {
    const at = (root: string) => ({
      version: 2 as const,
      mountPoint: '/sys/fs/cgroup',
      root,
      controllers: []
    })
    expect(ownDir(at('/'), '/')).toBe('/sys/fs/cgroup')
    expect(ownDir(at('/'), '/system.slice/x')).toBe('/sys/fs/cgroup/system.slice/x')
    expect(ownDir(at('/kube'), '/kube/pod1')).toBe('/sys/fs/cgroup/pod1')
    expect(ownDir(at('/kube'), '/kube')).toBe('/sys/fs/cgroup')
    // The mount shows another part of the hierarchy, or we do not know our path.
    expect(ownDir(at('/kube'), '/other')).toBeUndefined()
    expect(ownDir(at('/kube'), '/kubelet')).toBeUndefined()
    expect(ownDir(at('/'), undefined)).toBeUndefined()
  })
})

describe('chooseContainment', () => {
  const v2 = '/sys/fs/cgroup/unified/shoal-x'
  const pids = '/sys/fs/cgroup/pids/shoal-x'
  const freezer = '/sys/fs/cgroup/freezer/shoal-x'

  it('uses process groups when not root, whatever cgroups exist', () => {
    expect(chooseContainment({ root: false, v2: { dir: v2, kill: true, pids: true }, v1Pids: pids })).toEqual(
      { kind: 'process-group' }
    )
  })

  it('on a hybrid host: v2 for membership and kill, v1 pids for the cap', () => {
    expect(
      chooseContainment({
        root: true,
        v2: { dir: v2, kill: true, pids: false },
        v1Pids: pids,
        v1Freezer: freezer
      })
    ).toEqual({ kind: 'cgroup-v2', v2, pids: { version: 1, dir: pids } })
  })

  it('on a v2 host with pids delegated: v2 for everything', () => {
    expect(chooseContainment({ root: true, v2: { dir: v2, kill: true, pids: true } })).toEqual({
      kind: 'cgroup-v2',
      v2,
      pids: { version: 2, dir: v2 }
    })
  })

  it('v2 without pids anywhere: contained but uncapped', () => {
    expect(chooseContainment({ root: true, v2: { dir: v2, kill: true, pids: false } })).toEqual({
      kind: 'cgroup-v2',
      v2
    })
  })

  it('v2 without cgroup.kill (kernel < 5.14) falls back to v1, else process groups', () => {
    const old = { dir: v2, kill: false, pids: true }
    expect(chooseContainment({ root: true, v2: old, v1Pids: pids, v1Freezer: freezer })).toEqual({
      kind: 'cgroup-v1',
      v1Freezer: freezer,
      pids: { version: 1, dir: pids }
    })
    expect(chooseContainment({ root: true, v2: old })).toEqual({ kind: 'process-group' })
  })

  it('v1 with only one of pids and freezer is still cgroup-v1', () => {
    expect(chooseContainment({ root: true, v1Freezer: freezer })).toEqual({
      kind: 'cgroup-v1',
      v1Freezer: freezer
    })
    expect(chooseContainment({ root: true, v1Pids: pids })).toEqual({
      kind: 'cgroup-v1',
      pids: { version: 1, dir: pids }
    })
  })

  it('names the parent cgroup after the data dir hash', () => {
    expect(parentCgroupName('0123456789abcdef0123')).toBe('shoal-0123456789abcdef')
  })
})

describe('resolveCommand', () => {
  it('finds argv[0] like execvp: PATH order, executables only, paths as given', () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-resolve-'))
    try {
      const [a, b] = [join(dir, 'a'), join(dir, 'b')]
      mkdirSync(a)
      mkdirSync(b)
      writeFileSync(join(a, 'tool'), '', { mode: 0o644 }) // not executable: skipped
      writeFileSync(join(b, 'tool'), '#!/bin/sh\n', { mode: 0o755 })
      mkdirSync(join(a, 'dir.d'), { mode: 0o755 })
      symlinkSync(join(b, 'tool'), join(a, 'link'))
      const path = `${a}:${b}`
      expect(resolveCommand('tool', path, dir)).toBe(join(b, 'tool'))
      expect(resolveCommand('link', path, dir)).toBe(join(a, 'link'))
      expect(resolveCommand('dir.d', path, dir)).toBeUndefined()
      expect(resolveCommand('missing', path, dir)).toBeUndefined()
      expect(resolveCommand('./b/tool', undefined, dir)).toBe(join(b, 'tool'))
      expect(resolveCommand('/nonexistent/x', path, dir)).toBeUndefined()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
