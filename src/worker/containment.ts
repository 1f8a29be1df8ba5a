/**
 * Which containment a daemon gives its tasks, chosen from what the host offers
 * (docs/decisions/007-task-containment.md). Pure: the parsing of /proc files and the choice live
 * here, the probing and the cgroup I/O in cgroup.ts.
 */

import type { ContainmentKind } from '../core/api.ts'

/** How a task's processes are held together (defined with the API's health answer, which shows it). */
export type { ContainmentKind }

/** A mounted cgroup hierarchy, from /proc/self/mountinfo. */
export interface CgroupMount {
  version: 1 | 2
  /** Where it is mounted. */
  mountPoint: string
  /** The hierarchy path shown at the mount point ("/" unless in a cgroup namespace's view). */
  root: string
  /** v1: the controllers bound to it (from the super options); v2: empty. */
  controllers: string[]
}

/** Parse /proc/self/mountinfo into its cgroup mounts. */
export function parseMountinfo(text: string): CgroupMount[] {
  const out: CgroupMount[] = []
  for (const line of text.split('\n')) {
    // id parent major:minor root mountpoint options [optional fields...] - fstype source superoptions
    const [left, right] = line.split(' - ')
    if (left === undefined || right === undefined) continue
    const l = left.split(' ')
    const [fstype, , superOptions = ''] = right.split(' ')
    const root = unescapeMount(l[3] ?? '')
    const mountPoint = unescapeMount(l[4] ?? '')
    if (fstype === 'cgroup2') out.push({ version: 2, mountPoint, root, controllers: [] })
    else if (fstype === 'cgroup') {
      const controllers = superOptions.split(',').filter((o) => V1_CONTROLLERS.has(o))
      out.push({ version: 1, mountPoint, root, controllers })
    }
  }
  return out
}

const V1_CONTROLLERS = new Set(['pids', 'freezer', 'memory', 'cpu', 'cpuacct', 'cpuset', 'blkio', 'devices'])

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)))
}

/** This process's cgroups, from /proc/self/cgroup: the v2 path and the path per v1 controller. */
export interface OwnCgroups {
  v2?: string
  v1: Record<string, string>
}

export function parseProcCgroup(text: string): OwnCgroups {
  const own: OwnCgroups = { v1: {} }
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line)
    if (m === null) continue
    const [, id, list, path] = m as unknown as [string, string, string, string]
    if (id === '0' && list === '') own.v2 = path
    else for (const c of list.split(',')) if (c !== '') own.v1[c] = path
  }
  return own
}

/**
 * The directory of this process's own cgroup in a hierarchy, or undefined when the mount does
 * not show it (the mount is of another part of the hierarchy).
 */
export function ownDir(mount: CgroupMount, ownPath: string | undefined): string | undefined {
  if (ownPath === undefined) return undefined
  const root = mount.root === '/' ? '' : mount.root
  if (root !== '' && ownPath !== root && !ownPath.startsWith(`${root}/`)) return undefined
  const rest = ownPath.slice(root.length)
  return `${mount.mountPoint.replace(/\/$/, '')}${rest === '/' ? '' : rest}`
}

/** What the daemon found it can do on this host (probed at start). */
export interface ContainmentFacts {
  /** Running as root (cgroups need it). */
  root: boolean
  /** A cgroup v2 directory where the daemon could create its own child, and what it offers. */
  v2?: { dir: string; kill: boolean; pids: boolean }
  /** cgroup v1 directories where the daemon could create its own child, per controller. */
  v1Pids?: string
  v1Freezer?: string
}

/** The containment chosen, with the directories under which each run gets its own cgroup. */
export interface ContainmentPlan {
  kind: ContainmentKind
  /** v2 parent dir (membership and kill through cgroup.kill). */
  v2?: string
  /** v1 parent dirs (membership; freezer to kill a forking task race-free). */
  v1Freezer?: string
  /** Where the per-task process cap (pids.max) is set: a v2 or v1 parent dir. */
  pids?: { version: 1 | 2; dir: string }
}

/**
 * Choose the containment: cgroup v2 when root and a writable v2 hierarchy has cgroup.kill (the
 * process cap from v2's pids controller if delegated, else from the v1 pids hierarchy of a hybrid
 * layout); else cgroup v1 when root and a writable v1 pids or freezer hierarchy exists; else
 * process groups, which a task can leave with setsid and which cannot cap forks.
 */
export function chooseContainment(f: ContainmentFacts): ContainmentPlan {
  if (!f.root) return { kind: 'process-group' }
  const v1pids = f.v1Pids !== undefined ? { version: 1 as const, dir: f.v1Pids } : undefined
  if (f.v2?.kill === true) {
    const pids = f.v2.pids ? { version: 2 as const, dir: f.v2.dir } : v1pids
    return { kind: 'cgroup-v2', v2: f.v2.dir, ...(pids !== undefined ? { pids } : {}) }
  }
  if (f.v1Pids !== undefined || f.v1Freezer !== undefined) {
    return {
      kind: 'cgroup-v1',
      ...(f.v1Freezer !== undefined ? { v1Freezer: f.v1Freezer } : {}),
      ...(v1pids !== undefined ? { pids: v1pids } : {})
    }
  }
  return { kind: 'process-group' }
}

/**
 * The name of the parent cgroup of one daemon's runs: derived from its data dir, so a restarted
 * daemon finds what its previous life left, and two daemons on one host never share one.
 */
export function parentCgroupName(dataDirHash: string): string {
  return `shoal-${dataDirHash.slice(0, 16)}`
}
