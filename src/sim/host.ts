import type { EngineConfig } from '../core/config.ts'
import type { Transition } from '../core/membership.ts'
import type { Cancel, Clock, Log, RunIdentity, TaskResult, TaskRun, TaskRunner } from '../core/ports.ts'
import type { Claim, JobRegister } from '../core/register.ts'
import { type Entry, entryKey, type ReplicatedState } from '../core/state.ts'
import type { GossipMessage, PeerRecord } from '../core/wire.ts'
import { type NodeSeams, ShoalNode } from '../engine/node.ts'
import type { PullRequest, Transport, TransportHandlers } from '../mesh/transport.ts'
import { blobNotFound, MemoryBlobStore } from '../store/blobs.ts'
import { StoreError } from '../store/errors.ts'
import type { ChangeSource } from '../store/replica.ts'
import type { StateStore, WriteOptions } from '../store/types.ts'
import type { VirtualClock } from './clock.ts'
import type { Message } from './network.ts'
import type { Random } from './random.ts'

/** How one try of a fragment will go, drawn when it starts. */
export interface RunPlan {
  durationMs: number
  exitCode: number
  timedOut: boolean
}

/** How a run ended: recorded its try, killed for a lost claim or a cancel, handed back, or died with its host. */
export type RunEnd = 'recorded' | 'aborted' | 'handback' | 'killed'

/** What a host sees of the simulated world around it, and what it reports to the checker. */
export interface World {
  readonly clock: VirtualClock
  /** Every host id (the persisted peer store: everyone knows everyone's address). */
  readonly peerIds: readonly string[]
  /** Wall clock origin, ms. */
  readonly wallBase: number
  send(from: string, to: string, msg: Message): void
  /** Up, and on the same side of any partition. */
  reachable(from: string, to: string): boolean
  planRun(job: JobRegister, path: string, items: number): RunPlan
  /** Fenced external resource: note a token at start; commit at the end (false: refused, exit 75). */
  fenceTouch(key: string, token: number): void
  fenceCommit(key: string, token: number): boolean
  newJobId(): string
  /** A register changed at `host`: `old` (as held before) became `next`. */
  onChange(host: string, old: Entry | undefined, next: Entry, source: ChangeSource): void
  onRunStart(host: string, run: RunIdentity): void
  /** A run ended: `executed` when its task ran to the end and committed (exit 0). */
  onRunEnd(host: string, run: RunIdentity, how: RunEnd, executed: boolean): void
  /** This host's judgement of a peer changed (alive, suspect, dead, left). */
  onTransition(host: string, t: Transition): void
  /** The protocol code logged an error, or threw where nothing caught it. */
  onError(host: string, what: string): void
  /** The host's daemon could not start: its disk refused the start's synced writes. */
  onStartRefused(host: string): void
  trace(line: string): void
  readonly tracing: boolean
}

/** Per-host settings drawn by the simulation. */
export interface HostInit {
  id: string
  config: EngineConfig
  /** How often the OS writes back unsynced writes. */
  fsyncEveryMs: number
  /** Origin of this host's monotonic clock and skew of its wall clock: no two hosts agree. */
  monoOffset: number
  wallSkew: number
  /** SIGTERM → exit of a killed task. */
  killMs: number
  /** Longest anti-entropy pull. */
  pullTimeoutMs: number
  /** Fragments per slot the task runner holds (a warm pool's queue, TaskRunner.depth). */
  depth: number
  rng: Random
  seams: NodeSeams
}

/** The durable part of a host: what survives a crash. */
interface Disk {
  registers: Map<string, Entry>
  meta: Map<string, unknown>
  /** Output blobs (a put is durable once it resolves). */
  blobs: MemoryBlobStore
}

interface SimRun {
  run: RunIdentity
  aborted: boolean
}

/**
 * One virtual host: a disk that survives crashes, and at most one process at a time, which is
 * the shipped engine (ShoalNode: replica, mesh protocol, scheduler, job service) over virtual
 * ports — a clock on this host's skewed time, a transport over the fake network, a store whose
 * unsynced writes a crash loses, and simulated tasks. Every callback a process gets is tied to
 * its life (a crash ends the life: nothing of it runs again) and waits out a pause (it then runs
 * late, as on a stalled event loop). No protocol decision is made here.
 */
export class SimHost {
  readonly id: string
  readonly init: HostInit
  private readonly w: World
  private readonly disk: Disk = { registers: new Map(), meta: new Map(), blobs: new MemoryBlobStore() }
  /** Written but not yet synced: a crash loses it (power loss). */
  private unsynced = new Map<string, Entry | null>()
  up = false
  paused = false
  /** The disk refuses every write (full) until the nemesis frees it. */
  diskFull = false
  /** Never coming back. */
  lost = false
  /** Drained by the operator (kept across restarts, as the daemon's data dir keeps it). */
  drained = false
  private life = 0
  node: ShoalNode | undefined
  private runs = new Map<string, SimRun>()
  /** What this life's replica holds, per key (the old value of each change, for the checks). */
  private held = new Map<string, Entry>()
  private deferredTimers: Array<() => void> = []
  private deferredIo: Array<() => void> = []
  private handlers: TransportHandlers | undefined
  private reqSeq = 0
  private readonly waiting = new Map<
    number,
    { what: string; resolve: (m: Message) => void; reject: (e: Error) => void }
  >()

  constructor(world: World, init: HostInit) {
    this.w = world
    this.init = init
    this.id = init.id
  }

  /** The blobs on this host's disk. */
  get blobs(): MemoryBlobStore {
    return this.disk.blobs
  }

  get capacity(): number {
    return this.init.config.capacity
  }

  /** Up, started, and not leaving. */
  get serving(): boolean {
    return this.up && this.node !== undefined && this.node.state === 'alive'
  }

  get synced(): boolean {
    return this.node?.ready === true && this.node.mesh.isSynced
  }

  /** The replicated state of the current life. */
  get state(): ReplicatedState {
    return (this.node as ShoalNode).replica.state
  }

  get runningCount(): number {
    return this.runs.size
  }

  /** What keeps this host busy, for the report of a run that did not converge. */
  get busy(): string {
    return [`${this.runs.size} running`, ...[...this.waiting.values()].map((w) => w.what)].join(', ')
  }

  /** No task runs and no push awaits its ack (background anti-entropy pulls do not count). */
  get idle(): boolean {
    if (this.runs.size > 0) return false
    for (const w of this.waiting.values()) if (w.what.startsWith('push')) return false
    return true
  }

  /** Is a live (not paused) process of this incarnation running exactly this claim right now? */
  runsClaim(key: string, claim: Pick<Claim, 'incarnation' | 'epoch'>): boolean {
    const r = this.runs.get(key)
    return (
      this.up &&
      !this.paused &&
      this.node?.incarnation === claim.incarnation &&
      r !== undefined &&
      !r.aborted &&
      r.run.claim.epoch === claim.epoch
    )
  }

  private trace(msg: string): void {
    if (this.w.tracing) this.w.trace(`${this.id}#${this.node?.incarnation ?? 0} ${msg}`)
  }

  // ---- the process ----

  /** Start (or restart) the engine on this host's disk. */
  start(): void {
    this.up = true
    this.paused = false
    this.life++
    this.runs = new Map()
    this.waiting.clear()
    this.deferredTimers = []
    this.deferredIo = []
    this.handlers = undefined
    this.held = new Map()
    for (const [k, e] of this.disk.registers) this.held.set(k, e)
    const life = this.life
    this.trace(`start (${this.disk.registers.size} registers on disk)`)
    this.fsyncLoop(life)
    const node = new ShoalNode(
      this.init.config,
      {
        store: this.store(life),
        blobs: this.disk.blobs,
        transport: this.transport(life),
        runner: this.runner(life),
        clock: this.clock(life),
        logger: this.logger(life),
        newId: () => this.w.newJobId()
      },
      {
        peerId: this.id,
        apiUrl: () => '',
        bootstrapCount: this.w.peerIds.length - 1,
        taskPath: '/bin',
        pullTimeoutMs: this.init.pullTimeoutMs,
        drained: this.drained,
        seams: this.init.seams,
        onChange: (changed, source) => {
          if (life !== this.life) return
          for (const e of changed) {
            const key = entryKey(e)
            this.w.onChange(this.id, this.held.get(key), e, source)
            this.held.set(key, e)
          }
        },
        onTransition: (t) => {
          if (life === this.life) this.w.onTransition(this.id, t)
        }
      }
    )
    this.node = node
    node.start().catch((err: unknown) => {
      if (life !== this.life) return
      // A full disk refuses the synced incarnation: the daemon exits (2) and is started again later.
      if (err instanceof StoreError) {
        this.trace(`start refused by the disk: ${err.message}`)
        this.down()
        this.w.onStartRefused(this.id)
        return
      }
      this.w.onError(this.id, `start failed: ${(err as Error).stack ?? err}`)
    })
  }

  /** Power loss: processes die, writes since the last sync are gone. Returns how many were lost. */
  crash(): number {
    const lost = this.unsynced.size
    this.trace(`crash (${lost} unsynced writes lost, ${this.runs.size} runs killed)`)
    // Every process of the host dies with it, a run being killed already included.
    for (const r of this.runs.values()) this.w.onRunEnd(this.id, r.run, 'killed', false)
    this.down()
    return lost
  }

  private down(): void {
    this.up = false
    this.paused = false
    this.life++
    this.unsynced = new Map()
    this.runs = new Map()
    this.waiting.clear()
    this.deferredTimers = []
    this.deferredIo = []
  }

  /** The event loop stops (GC, SIGSTOP, a frozen VM). Child processes go on running. */
  pause(): void {
    this.trace('pause')
    this.paused = true
  }

  /**
   * The event loop runs again. As in Node, expired timers run first (in expiry order), then the
   * I/O that queued up meanwhile (messages, exits of child processes), in arrival order.
   */
  resume(): void {
    if (!this.up || !this.paused) return
    this.trace(`resume (${this.deferredTimers.length} timers, ${this.deferredIo.length} I/O)`)
    this.paused = false
    const timers = this.deferredTimers
    const io = this.deferredIo
    this.deferredTimers = []
    this.deferredIo = []
    for (const fn of timers) fn()
    for (const fn of io) fn()
  }

  /**
   * Graceful leave, as on SIGTERM: the engine's own stop (claim nothing, let runs finish up to
   * shutdownGraceMs, hand back the rest, announce leaving, flush, close). `done` runs once down.
   */
  leave(done: () => void): void {
    const node = this.node
    if (!this.up || this.paused || node === undefined) return
    const life = this.life
    this.trace('leaving')
    node.stop().then(
      () => {
        if (life !== this.life) return
        this.trace('left')
        this.fsync()
        this.down()
        done()
      },
      (err: unknown) => {
        if (life !== this.life) return
        // A stop whose last write the disk refused still ends the process (exit 1); it comes
        // back like any other. Anything else failing a stop is a bug.
        const errors = err instanceof AggregateError ? err.errors : [err]
        if (!errors.every((e) => e instanceof StoreError))
          this.w.onError(this.id, `stop failed: ${(err as Error).stack ?? err}`)
        this.trace('left (its last write refused)')
        this.down()
        done()
      }
    )
  }

  /** A message arrives. False when no process runs here (the network counts it undeliverable). */
  receive(msg: Message): boolean {
    if (!this.up) {
      // Nobody listens: a dial fails at once, so the sender learns it quickly.
      if (isRequest(msg)) this.w.send(this.id, msg.from, { t: 'refused', from: this.id, req: msg.req })
      return false
    }
    if (this.paused) this.deferredIo.push(() => this.handle(msg))
    else this.handle(msg)
    return true
  }

  private handle(msg: Message): void {
    const h = this.handlers
    if (h === undefined) {
      // Not listening yet: a dial fails at once.
      if (isRequest(msg)) this.w.send(this.id, msg.from, { t: 'refused', from: this.id, req: msg.req })
      if (msg.t !== 'gossip' && !isRequest(msg)) this.answered(msg)
      return
    }
    switch (msg.t) {
      case 'gossip':
        h.gossip(msg.msg)
        return
      case 'pull': {
        const entries = [...h.servePull(msg.request)]
        this.w.send(this.id, msg.from, { t: 'pulled', from: this.id, req: msg.req, entries })
        return
      }
      case 'push': {
        const life = this.life
        h.servePush(msg.entries).then(
          () => {
            if (life === this.life) this.w.send(this.id, msg.from, { t: 'ack', from: this.id, req: msg.req })
          },
          (err: unknown) => {
            if (life !== this.life) return
            // The push stream is reset: the pusher tries its next peer.
            if (err instanceof StoreError)
              this.w.send(this.id, msg.from, { t: 'refused', from: this.id, req: msg.req })
            else this.w.onError(this.id, `push serve failed: ${String(err)}`)
          }
        )
        return
      }
      case 'blob-get': {
        const life = this.life
        h.serveBlob(msg.sha256)
          .then(async (b) => (b === undefined ? null : await collect(b.source)))
          .then(
            (chunks) => {
              if (life === this.life)
                this.w.send(this.id, msg.from, { t: 'blob', from: this.id, req: msg.req, chunks })
            },
            (err: unknown) => {
              if (life === this.life) this.w.onError(this.id, `blob serve failed: ${String(err)}`)
            }
          )
        return
      }
      case 'blob-has': {
        const life = this.life
        h.heldBlobs(msg.sha256s).then(
          (sha256s) => {
            if (life === this.life)
              this.w.send(this.id, msg.from, { t: 'blob-held', from: this.id, req: msg.req, sha256s })
          },
          (err: unknown) => {
            if (life === this.life) this.w.onError(this.id, `blob question failed: ${String(err)}`)
          }
        )
        return
      }
      case 'blob-put': {
        const life = this.life
        h.receiveBlob(msg.blob, iterate(msg.chunks), msg.job).then(
          () => {
            if (life === this.life) this.w.send(this.id, msg.from, { t: 'ack', from: this.id, req: msg.req })
          },
          () => {
            if (life === this.life)
              this.w.send(this.id, msg.from, { t: 'refused', from: this.id, req: msg.req })
          }
        )
        return
      }
      default:
        this.answered(msg)
    }
  }

  /** An answer to one of this life's requests arrived. */
  private answered(msg: Exclude<Message, { t: 'gossip' }>): void {
    const waiter = this.waiting.get(msg.req)
    if (waiter === undefined) return
    this.waiting.delete(msg.req)
    if (msg.t === 'refused') waiter.reject(new Error(`${msg.from} refused`))
    else waiter.resolve(msg)
  }

  /** Schedule a callback of this life: it dies with the process and waits out a pause. */
  private later(life: number, delayMs: number, kind: 'timer' | 'io', fn: () => void): Cancel {
    let cancelled = false
    this.w.clock.after(delayMs, () => {
      if (cancelled || life !== this.life || !this.up) return
      const run = (): void => {
        if (!cancelled && life === this.life) fn()
      }
      if (this.paused) (kind === 'timer' ? this.deferredTimers : this.deferredIo).push(run)
      else run()
    })
    return () => {
      cancelled = true
    }
  }

  // ---- the ports ----

  private clock(life: number): Clock {
    const rng = this.init.rng
    return {
      now: () => this.w.clock.now + this.init.monoOffset,
      wallNow: () => Math.round(this.w.wallBase + this.w.clock.now + this.init.wallSkew),
      after: (ms, fn) => this.later(life, ms, 'timer', fn),
      random: () => rng.float()
    }
  }

  private logger(life: number): Log {
    const log: Log = {
      debug: () => undefined,
      info: (obj, msg) => {
        if (this.w.tracing && life === this.life) this.trace(describe(obj, msg))
      },
      warn: (obj, msg) => {
        if (this.w.tracing && life === this.life) this.trace(`warn: ${describe(obj, msg)}`)
      },
      // The engine logs an error only for what should never happen: the checker counts it. An
      // outage of the state store (the disk nemesis) is reported at error level once, as to an
      // operator: expected while this host's disk is full.
      error: (obj, msg) => {
        if (life !== this.life) return
        if (typeof obj === 'object' && 'failure' in obj) {
          if (this.w.tracing) this.trace(`store: ${describe(obj, msg)}`)
          return
        }
        this.w.onError(this.id, describe(obj, msg))
      },
      child: () => log
    }
    return log
  }

  private transport(life: number): Transport {
    const self = this
    const ask = (peer: string, msg: Message, timeoutMs: number): Promise<Message> =>
      new Promise((resolve, reject) => {
        if (life !== this.life) return // a dead process waits forever
        const req = (msg as { req: number }).req
        this.waiting.set(req, {
          what: `${msg.t} ${peer} at ${Math.round(this.w.clock.now)}ms`,
          resolve,
          reject
        })
        this.later(life, timeoutMs, 'timer', () => {
          if (!this.waiting.delete(req)) return
          reject(new Error(`${msg.t} with ${peer} timed out after ${Math.floor(timeoutMs)} ms`))
        })
        this.w.send(this.id, peer, msg)
      })
    return {
      start: async (handlers) => {
        if (life === this.life) this.handlers = handlers
      },
      stop: async () => undefined,
      publish: async (msg: GossipMessage) => {
        if (life !== this.life) return
        for (const id of this.w.peerIds)
          if (id !== this.id) this.w.send(this.id, id, { t: 'gossip', from: this.id, msg })
      },
      pull: async (peer: string, request: PullRequest, timeoutMs, accept) => {
        const answer = await ask(peer, { t: 'pull', from: this.id, req: ++this.reqSeq, request }, timeoutMs)
        if (answer.t === 'pulled') await accept(answer.entries)
      },
      push: async (peer, entries, timeoutMs) => {
        await ask(peer, { t: 'push', from: this.id, req: ++this.reqSeq, entries }, timeoutMs)
      },
      fetchBlob: async function* (this: void, peer: string, sha256: string, idleMs: number) {
        const answer = await ask(peer, { t: 'blob-get', from: self.id, req: ++self.reqSeq, sha256 }, idleMs)
        if (answer.t !== 'blob') throw new Error(`unexpected answer ${answer.t}`)
        if (answer.chunks === null) throw blobNotFound(sha256)
        yield* answer.chunks
      },
      blobsHeld: async (peer, sha256s, timeoutMs) => {
        const answer = await ask(
          peer,
          { t: 'blob-has', from: this.id, req: ++this.reqSeq, sha256s },
          timeoutMs
        )
        if (answer.t !== 'blob-held') throw new Error(`unexpected answer ${answer.t}`)
        return answer.sha256s
      },
      sendBlob: async (peer, blob, source, idleMs, job) => {
        const chunks = await collect(source)
        await ask(
          peer,
          {
            t: 'blob-put',
            from: this.id,
            req: ++this.reqSeq,
            blob,
            chunks,
            ...(job !== undefined ? { job } : {})
          },
          idleMs
        )
      },
      connectedPeers: () => this.w.peerIds.filter((p) => p !== this.id && this.w.reachable(this.id, p)),
      knownPeers: async () => this.w.peerIds.length - 1,
      unreachedBootstrap: () => [],
      multiaddrs: () => [],
      heardOf: (_record: PeerRecord) => undefined
    }
  }

  private runner(life: number): TaskRunner {
    return {
      depth: () => this.init.depth,
      run: (req: TaskRun): Promise<TaskResult> => {
        const id = req.fragment
        if (id === undefined) throw new Error('the simulator runs fragments only')
        return new Promise((resolve) => {
          if (life !== this.life) return
          const { job, key, token, items } = id
          this.w.onRunStart(this.id, id)
          req.onStart?.()
          const plan = this.w.planRun(job, id.path, items)
          const fenced = job.spec.env['SIM_FENCED'] === '1'
          if (fenced) this.w.fenceTouch(key, token)
          const r: SimRun = { run: id, aborted: false }
          this.runs.set(key, r)
          this.trace(
            `run ${key} epoch ${id.claim.epoch} attempt ${id.claim.attempt} (${Math.round(plan.durationMs)}ms)`
          )
          let ended = false
          const end = (how: RunEnd, result: Partial<TaskResult>, executed: boolean): void => {
            if (ended) return
            ended = true
            if (this.runs.get(key) === r) this.runs.delete(key)
            this.w.onRunEnd(this.id, id, how, executed)
            resolve({ ...EMPTY_RESULT, durationMs: plan.durationMs, ...result })
          }
          req.signal?.addEventListener('abort', () => {
            r.aborted = true
            const why = req.signal?.reason
            this.later(life, this.init.killMs, 'io', () =>
              end(
                why === 'handback' || why === 'drain' ? 'handback' : 'aborted',
                { aborted: true, signal: 'SIGKILL' },
                false
              )
            )
          })
          this.later(life, plan.durationMs, 'io', () => {
            if (r.aborted) return
            if (plan.timedOut) {
              end('recorded', { exitCode: null, signal: 'SIGTERM', timedOut: true }, false)
              return
            }
            let exitCode = plan.exitCode
            // A fenced task commits its output at the end; the resource refuses an older token (exit 75).
            if (exitCode === 0 && fenced && !this.w.fenceCommit(key, token)) exitCode = 75
            const stdout = exitCode === 0 ? `out ${id.path}\n` : ''
            if (stdout.length <= req.inlineOutputBytes) {
              end('recorded', { exitCode, stdout, bytes: stdout.length }, exitCode === 0)
              return
            }
            // Past the inline size the output goes to this host's blob store, as the executor's does.
            this.disk.blobs.put(iterate([Buffer.from(stdout)])).then(
              (blob) => {
                if (life === this.life && !r.aborted)
                  end('recorded', { exitCode, stored: true, sha256: blob.sha256, bytes: blob.bytes }, true)
              },
              (err: unknown) => this.w.onError(this.id, `blob put failed: ${String(err)}`)
            )
          })
        })
      }
    }
  }

  private store(life: number): StateStore {
    const alive = (): boolean => life === this.life
    // A dead process's calls never return (it is gone); a live one's settle at once.
    const io = <T>(fn: () => T): Promise<T> =>
      alive() ? new Promise<T>((resolve) => resolve(fn())) : new Promise<T>(() => undefined)
    // Like LevelStore: after a failed write the store refuses every write until recovered.
    let broken: StoreError | undefined
    const write = <T>(fn: () => T): Promise<T> =>
      io(() => {
        if (broken !== undefined) throw broken
        if (this.diskFull) {
          broken = new StoreError('full', `${this.id}:state`, `no space left on ${this.id}'s state store`)
          throw broken
        }
        return fn()
      })
    return {
      open: () => io(() => undefined),
      close: () => io(() => undefined),
      loadAll: () => io(() => [...this.disk.registers.values()]),
      write: (entries: readonly Entry[], options?: WriteOptions, removals: readonly string[] = []) =>
        write(() => {
          for (const e of entries) this.unsynced.set(entryKey(e), e)
          for (const k of removals) this.unsynced.set(k, null)
          // A synced write syncs the log, with every write before it.
          if (options?.sync === true) this.fsync()
        }),
      clearState: () =>
        write(() => {
          this.disk.registers.clear()
          this.unsynced = new Map()
        }),
      getMeta: <T>(key: string) => io(() => this.disk.meta.get(key) as T | undefined),
      putMeta: (key: string, value: unknown) =>
        write(() => {
          this.disk.meta.set(key, value)
        }),
      get failure() {
        return broken
      },
      recover: () =>
        io(() => {
          if (broken === undefined) return
          if (this.diskFull) throw broken
          broken = undefined
        })
    }
  }

  private fsync(): void {
    for (const [k, e] of this.unsynced) {
      if (e === null) this.disk.registers.delete(k)
      else this.disk.registers.set(k, e)
    }
    this.unsynced = new Map()
  }

  /** The OS writes unsynced data back now and then, whatever the process does. */
  private fsyncLoop(life: number): void {
    this.w.clock.after(this.init.fsyncEveryMs, () => {
      if (life !== this.life) return
      this.fsync()
      this.fsyncLoop(life)
    })
  }
}

const EMPTY_RESULT: TaskResult = {
  exitCode: 0,
  signal: null,
  stdout: '',
  stored: false,
  sha256: '0'.repeat(64),
  bytes: 0,
  stderrTail: '',
  timedOut: false,
  outputTooLarge: false,
  aborted: false,
  durationMs: 0
}

function describe(obj: object | string, msg?: string): string {
  if (typeof obj === 'string') return obj
  const err = (obj as { err?: unknown }).err
  const detail = err instanceof Error ? (err.stack ?? err.message) : JSON.stringify(obj)
  return `${msg ?? ''} ${detail}`.trim()
}

/** A message that opens an exchange (the others answer one, or are gossip). */
function isRequest(
  msg: Message
): msg is Extract<Message, { t: 'pull' | 'push' | 'blob-get' | 'blob-put' | 'blob-has' }> {
  return (
    msg.t === 'pull' ||
    msg.t === 'push' ||
    msg.t === 'blob-get' ||
    msg.t === 'blob-put' ||
    msg.t === 'blob-has'
  )
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for await (const c of source) out.push(c)
  return out
}

async function* iterate(chunks: readonly Uint8Array[]): AsyncIterable<Uint8Array> {
  yield* chunks
}
