/**
 * Task networks (issue 13): a task's process runs in the host's network namespace (`host`, the
 * default), in a new one of its own with only loopback (`none`), or in a namespace the operator
 * made with `ip netns add NAME` (its name). Outside the host's namespace a task cannot reach the
 * daemon's API or p2p port, nor anything else on the host's loopback.
 */

/** Where `ip netns add NAME` keeps a named network namespace. */
export const NETNS_DIR = '/var/run/netns'

/** The task network of a task config: `host` unless it names another. */
export function taskNetwork(network: string | undefined): string {
  return network ?? 'host'
}

/**
 * argv that runs `argv` in the task's network: as it is for `host`; under `unshare --net`, with
 * its loopback brought up, for `none`; under `nsenter --net=` the named namespace otherwise.
 * Needs root (checked when the daemon starts).
 */
export function inTaskNetwork(argv: readonly string[], network: string | undefined): string[] {
  const net = taskNetwork(network)
  if (net === 'host') return [...argv]
  if (net === 'none')
    return [
      'unshare',
      '--net',
      '--',
      '/bin/sh',
      '-c',
      'ip link set lo up || exit 125; exec "$@"',
      'shoal-net',
      ...argv
    ]
  return ['nsenter', `--net=${NETNS_DIR}/${net}`, '--', ...argv]
}
