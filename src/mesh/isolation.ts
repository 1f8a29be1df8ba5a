/**
 * Isolation: a daemon that should have peers (it was given bootstrap addresses, or it had peers
 * and lost them) but has had no connection for a while. Pure: the transport feeds it what it
 * sees and asks it, on a timer, whether to warn; the words say why, from the last dial failures.
 */

/** What a plain TCP connect to a bootstrap address found (the libp2p error alone cannot tell). */
export type TcpProbe = 'connected' | 'refused' | 'unreachable' | 'timeout' | 'failed'

/** The parts of a dial error that matter here. */
export interface DialError {
  name?: string
  code?: string
  message?: string
}

/**
 * One line on why a dial of a bootstrap address failed. `probe` is what a TCP connect to the
 * same host and port found: when TCP connects but libp2p's dial still fails (times out, or the
 * other side hangs up), the private-network handshake is what failed: the swarm keys differ.
 */
export function explainDialFailure(
  err: DialError,
  probe: TcpProbe | undefined,
  hasSwarmKey: boolean
): string {
  const message = String(err.message ?? '')
  const code = err.code ?? /\b(E[A-Z]{4,})\b/.exec(message)?.[1]
  if (/does not match expected remote identity key/.test(message))
    return 'another daemon answers there (its peer id changed: a new data dir?); take its address again from its daemon.json'
  if (code === 'ECONNREFUSED' || probe === 'refused')
    return 'connection refused: no daemon listens there (it is down, or on another port)'
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || probe === 'unreachable')
    return 'no route to that host (a wrong address, or the network is down)'
  if (probe === 'connected')
    return hasSwarmKey
      ? 'TCP connects but the private-network handshake fails: the swarm keys differ (or that daemon has none)'
      : 'TCP connects but the handshake fails: that daemon has a swarm key and this one has none (set swarmKey)'
  if (probe === 'timeout') return 'no answer (the host is down, or a firewall drops the packets)'
  return (message.split('\n')[0] ?? '').trim() || (err.name ?? 'the dial failed')
}

/** What {@link Isolation.check} tells the transport to do. */
export type IsolationChange =
  | { kind: 'isolated'; reason: string; bootstrap: string[] }
  | { kind: 'rejoined' }
  | undefined

/** Tracks connections and dial failures; says when the daemon became, or stopped being, isolated. */
export class Isolation {
  private readonly bootstrap: readonly string[]
  private readonly afterMs: number
  /** Since when (ms) this daemon has had no connection; undefined while it has one. */
  private aloneSince: number | undefined
  private hadPeers = false
  private lastPeer: string | undefined
  private readonly failures = new Map<string, string>()
  private current: string | undefined

  constructor(bootstrap: readonly string[], afterMs: number, now: number) {
    this.bootstrap = bootstrap
    this.afterMs = afterMs
    this.aloneSince = now
  }

  /** The reason while isolated, else undefined (at once undefined once a connection is up). */
  get reason(): string | undefined {
    return this.aloneSince === undefined ? undefined : this.current
  }

  connected(): void {
    this.aloneSince = undefined
    this.hadPeers = true
    this.failures.clear()
  }

  /** The last connection closed (to `peer`). */
  lostAll(peer: string, now: number): void {
    this.aloneSince ??= now
    this.lastPeer = peer
  }

  /** A dial of a bootstrap address failed, for this reason (see explainDialFailure). */
  dialFailed(addr: string, reason: string): void {
    this.failures.set(addr, reason)
  }

  /**
   * Called on a timer. Isolated: no connection for `afterMs`, while this daemon has somebody to
   * reach (bootstrap addresses, or peers it had). A daemon given no bootstrap that never had a
   * peer is the first of its mesh, not cut off from it.
   */
  check(now: number): IsolationChange {
    if (this.aloneSince === undefined) {
      if (this.current === undefined) return undefined
      this.current = undefined
      return { kind: 'rejoined' }
    }
    if (this.bootstrap.length === 0 && !this.hadPeers) return undefined
    if (now - this.aloneSince < this.afterMs) return undefined
    // Said again only when the reason changes (a dial that had not answered yet fails, a
    // refusing bootstrap turns into a wrong key), not on every check.
    const reason = this.describe()
    const changed = reason !== this.current
    this.current = reason
    return changed ? { kind: 'isolated', reason, bootstrap: [...this.bootstrap] } : undefined
  }

  private describe(): string {
    const s = Math.round(this.afterMs / 1000)
    if (this.bootstrap.length === 0)
      return `no peer for ${s} s: the connection to ${this.lastPeer ?? 'the last peer'} closed and none came back, and there is no bootstrap address to redial`
    const why = this.bootstrap.map((a) => `${a}: ${this.failures.get(a) ?? 'no answer yet'}`)
    return `no peer for ${s} s: cannot reach bootstrap ${why.join('; ')}`
  }
}
