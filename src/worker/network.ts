import { accessSync, constants } from 'node:fs'
import { join } from 'node:path'

/**
 * Task networks (issue 13): a task's process runs in the host's network namespace (`host`, the
 * default), in a new one of its own with only loopback (`none`), or in a namespace the operator
 * made with `ip netns add NAME` (its name). Outside the host's namespace a task cannot reach the
 * daemon's API or p2p port, nor anything else on the host's loopback; it runs with no
 * capabilities (so it cannot enter another namespace again), as its task's `user` if it has one.
 */

/** Where `ip netns add NAME` keeps a named network namespace. */
export const NETNS_DIR = '/var/run/netns'

/** Where the tools are looked for: the system's directories, never a job's PATH. */
const SYSTEM_PATH = '/usr/sbin:/usr/bin:/sbin:/bin'

/** The tools a task network needs, by absolute path (undefined: not on this host). */
export function networkTool(name: 'unshare' | 'nsenter' | 'ip' | 'setpriv'): string | undefined {
  for (const dir of SYSTEM_PATH.split(':')) {
    try {
      accessSync(join(dir, name), constants.X_OK)
      return join(dir, name)
    } catch {
      // not here
    }
  }
  return undefined
}

/** The task network of a task config: `host` unless it names another. */
export function taskNetwork(network: string | undefined): string {
  return network ?? 'host'
}

/**
 * argv that runs `argv` in the task's network: as it is for `host`; else under `unshare --net`
 * with its loopback brought up (`none`) or `nsenter --net=` the named namespace, then through
 * `setpriv`, which drops every capability (and, given a user, becomes it). Needs root and the
 * tools (checked when the daemon starts).
 */
export function inTaskNetwork(
  argv: readonly string[],
  network: string | undefined,
  user?: { uid: number; gid: number }
): string[] {
  const net = taskNetwork(network)
  if (net === 'host') return [...argv]
  const tool = (name: 'unshare' | 'nsenter' | 'ip' | 'setpriv'): string => {
    const path = networkTool(name)
    if (path === undefined) throw new Error(`${name} is not installed (task network "${net}")`)
    return path
  }
  const drop = [
    tool('setpriv'),
    ...(user !== undefined ? [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups'] : []),
    '--inh-caps=-all',
    '--bounding-set=-all',
    '--no-new-privs',
    '--'
  ]
  if (net === 'none') {
    return [
      tool('unshare'),
      '--net',
      '--',
      '/bin/sh',
      '-c',
      `${tool('ip')} link set lo up || exit 125; exec "$@"`,
      'shoal-net',
      ...drop,
      ...argv
    ]
  }
  return [tool('nsenter'), `--net=${NETNS_DIR}/${net}`, '--', ...drop, ...argv]
}
