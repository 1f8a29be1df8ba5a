import { canonical, sha256Hex } from '../core/canonical.ts'
import { ENGINE_DEFAULTS, type EngineConfig } from '../core/config.ts'
import { ShoalError } from '../core/errors.ts'
import type { Transition } from '../core/membership.ts'
import type { RunIdentity } from '../core/ports.ts'
import { type Claim, type JobRegister, mergeFragment } from '../core/register.ts'
import { isHandled, nextTick, rankingWindowMs, type ScheduleInput, tickJobKey } from '../core/schedule.ts'
import { idempotentJobId, type JobSpecInput, resolveSpec, specHashOf } from '../core/spec.ts'
import { type Entry, entryKey } from '../core/state.ts'
import { isTerminalJobState, jobView, leafFragments } from '../core/status.ts'
import type { NodeSeams } from '../engine/node.ts'
import type { OutputSeams } from '../engine/outputs.ts'
import type { ChangeSource } from '../store/replica.ts'
import { VirtualClock } from './clock.ts'
import { type RunEnd, type RunPlan, SimHost, type World } from './host.ts'
import {
  type AckedJob,
  checkFinal,
  checkStep,
  claimId,
  FencingLedger,
  JudgementLedger,
  sameClaimRecord,
  type Violation,
  type ViolationKind
} from './invariants.ts'
import { type Message, Network, type NetworkFaults } from './network.ts'
import { Random } from './random.ts'

/**
 * Bugs injected on purpose (tests only), to prove the checks catch them. The first three are
 * planted in the shipped engine through its test-only seams; the last two in the final state.
 */
export interface SimBugs {
  /** At this (1-based, run-wide) count of changes to held fragment registers, the merge returns an empty register. */
  lowerTopAtMerge?: number
  /** Restart without bumping the incarnation. */
  reuseIncarnation?: boolean
  /** After quiescence, one replica gets a result no run wrote. */
  corruptReplica?: boolean
  /** After quiescence, one replica forgets an acknowledged job. */
  dropAckedJob?: boolean
  /** After quiescence, one replica holds a deleted job as if it was never deleted. */
  forgetDelete?: boolean
  /** Bugs planted in the output keeper (no repairs; collecting referenced blobs). */
  outputs?: OutputSeams
  /** Each daemon that fires a schedule tick makes its own job of it. */
  perDaemonTickJobs?: boolean
  /** A schedule falls silent once it has handled three ticks. */
  silentSchedules?: boolean
}

export interface SimOptions {
  seed: number
  daemons: number
  /** Most jobs submitted (the run submits 1..jobs). */
  jobs?: number
  /** Most fragments per job (each job has 1..fragments). */
  fragments?: number
  /** Virtual ms of the fault phase (crashes, pauses, partitions, lossy network). */
  faultMs?: number
  /** Virtual ms after healing within which everything must have converged. */
  settleLimitMs?: number
  /** False: a clean run (no crashes, pauses, partitions or message loss). */
  faults?: boolean
  /** Plant the scheduler's old bug: a job once seen terminal is never scanned again. */
  stickyFinished?: boolean
  bugs?: SimBugs
  /** Receives a line per notable event (--verbose). */
  trace?: (line: string) => void
}

export const DEFAULTS = { jobs: 4, fragments: 60, faultMs: 30_000, settleLimitMs: 600_000 } as const

export interface SimStats {
  /** Virtual ms at the end of the run. */
  virtualMs: number
  /** Virtual ms when the faults stopped. */
  healedAtMs: number
  /** Virtual ms from healing until every replica was equal and every job terminal (null: never). */
  convergeMs: number | null
  events: number
  messagesSent: number
  messagesDelivered: number
  messagesDropped: number
  messagesDuplicated: number
  jobsSubmitted: number
  jobsAcknowledged: number
  /** 202s with fewer than ackReplicas replicas (not counted as acknowledged). */
  jobsUnderReplicated: number
  jobsRejected: number
  jobsSucceeded: number
  jobsFailed: number
  jobsCancelled: number
  /** Jobs compacted to a summary by the end of the run. */
  jobsCompacted: number
  /** Jobs a client deleted (the delete answered). */
  jobsDeleted: number
  /** Retries the clients asked for. */
  retries: number
  /** Times a host's disk filled up. */
  disksFull: number
  /** Starts a full disk refused (restarted later). */
  startsRefused: number
  /** Submits refused with 507/503 for want of a working disk. */
  jobsRefusedStorage: number
  /** Jobs where rival specs were accepted under one idempotency key (the smaller specHash won). */
  specConflicts: number
  leafFragments: number
  claims: number
  /** Claims that replaced a try lost with its host. */
  hostLostReclaims: number
  /** Of those, claims whose holder was in fact up, not stalled, running it, and not partitioned off. */
  falseHostLost: number
  /** Most processes of one capped job running at once beyond its maxConcurrency (decision 005 allows some). */
  capOvershoot: number
  /** Most processes of one tenant with maxRunning running at once beyond it (decision 018 allows some). */
  tenantOvershoot: number
  /** Times an operator drained a daemon. */
  drains: number
  /** Fragments failed for good after hostLostLimit lost tries. */
  hostLostFailures: number
  /** Times a daemon judged a peer dead. */
  deathsJudged: number
  runs: number
  /** Runs killed because a newer claim beat theirs. */
  abortedRuns: number
  handedBack: number
  /** Fenced commits refused (exit 75). */
  fencedRefusals: number
  /** Runs whose task ran to the end and committed. */
  executions: number
  /** Fragments executed (ran to the end and committed) more than once. */
  duplicateExecutions: number
  crashes: number
  restarts: number
  pauses: number
  partitions: number
  leaves: number
  permanentLosses: number
  /** Registers lost from unsynced windows by crashes. */
  lostUnsyncedWrites: number
  /** Output blobs the registers reference at the end, and their copies on the live daemons. */
  outputBlobs: number
  blobCopies: number
  /** Jobs a schedule made, each checked to be the one job of its tick. */
  scheduledJobs: number
  /** Ticks of the steady state after the heal, each checked to have fired (or been skipped). */
  steadyTicks: number
}

export interface SimResult {
  ok: boolean
  seed: number
  daemons: number
  violations: Violation[]
  stats: SimStats
  /** Digest of the final replicas and the stats: equal for equal seeds and options. */
  digest: string
  /** The command that replays this run. */
  replay: string
}

/** The command line that replays a run with these options. */
export function replayCommand(o: SimOptions): string {
  const parts = ['npm run sim --', `--seed ${o.seed}`, `--daemons ${o.daemons}`]
  if (o.jobs !== undefined && o.jobs !== DEFAULTS.jobs) parts.push(`--jobs ${o.jobs}`)
  if (o.fragments !== undefined && o.fragments !== DEFAULTS.fragments)
    parts.push(`--fragments ${o.fragments}`)
  if (o.faultMs !== undefined && o.faultMs !== DEFAULTS.faultMs) parts.push(`--fault-ms ${o.faultMs}`)
  if (o.settleLimitMs !== undefined && o.settleLimitMs !== DEFAULTS.settleLimitMs) {
    parts.push(`--settle-ms ${o.settleLimitMs}`)
  }
  if (o.faults === false) parts.push('--no-faults')
  if (o.stickyFinished === true) parts.push('--sticky-finished')
  const b = o.bugs ?? {}
  if (b.lowerTopAtMerge !== undefined) parts.push(`--bug lower-top:${b.lowerTopAtMerge}`)
  if (b.reuseIncarnation === true) parts.push('--bug reuse-incarnation')
  if (b.corruptReplica === true) parts.push('--bug corrupt-replica')
  if (b.dropAckedJob === true) parts.push('--bug drop-acked-job')
  return parts.join(' ')
}

/**
 * Run one simulation. Deterministic: no I/O, no real clock, no Math.random; same options, same
 * result. Async only because the engine is: after each event the run lets the engine's promise
 * chains settle before taking the next one.
 */
export function runSimulation(options: SimOptions): Promise<SimResult> {
  return new Simulation(options).run()
}

const MAX_VIOLATIONS = 50
const QUIET_CHECK_MS = 1000
/** The cron of the simulator's schedule: every 5 virtual seconds. */
const SIM_SCHEDULE_CRON = '*/5 * * * * *'
/** How far a daemon's wall clock may be off (virtual ms, either way). */
const MAX_WALL_SKEW_MS = 5000
/** How long the schedule runs on after the heal before the client deletes it (virtual ms). */
const SCHEDULE_STEADY_MS = 45_000
/** After the heal, the time the mesh has to settle before every tick must fire. */
const SCHEDULE_SETTLE_MS = 6000

/** Consecutive quiet checks (same digest) that make a run quiescent: in-flight messages have landed. */
const QUIET_CHECKS = 4

/** Timings of the run that are the harness's, not the engine's (the engine's are its defaults). */
const TIMING = { suspectMs: ENGINE_DEFAULTS.suspectMs, ackReplicas: ENGINE_DEFAULTS.ackReplicas, killMs: 20 }
/** The sim's pulls give up sooner than the daemon's 30 s (virtual links are fast or lost). */
const PULL_TIMEOUT_MS = 5000

class Simulation implements World {
  readonly clock = new VirtualClock()
  readonly rng: Random
  readonly bugs: SimBugs
  readonly peerIds: string[]
  readonly wallBase = 1_750_000_000_000
  readonly tracing: boolean
  private readonly o: Required<Omit<SimOptions, 'trace'>>
  private readonly traceFn: ((line: string) => void) | undefined
  private readonly net: Network
  private readonly faults: NetworkFaults
  private readonly daemons: SimHost[] = []
  private readonly byId = new Map<string, SimHost>()
  private readonly violations: Violation[] = []
  private readonly ledger = new FencingLedger()
  private readonly judgements = new JudgementLedger()
  private readonly recorded = new Set<string>()
  /** `${daemon}|${key}|${claimId}` of every run that ended on its own (its daemon may record it). */
  private readonly ranToEnd = new Set<string>()
  private readonly executions = new Map<string, number>()
  private readonly fence = new Map<string, number>()
  /** Processes running per job, across all daemons (the truth maxConcurrency is about). */
  private readonly runningByJob = new Map<string, number>()
  /** The daemons that run the second task, `sim2` (none in most runs). */
  private readonly sim2Hosts = new Set<string>()
  /** Processes running per tenant, across all daemons (the truth maxRunning is about). */
  private readonly runningByTenant = new Map<string, number>()
  /** The tenants of this run's jobs and their config (empty: every job is the client's, 'sim'). */
  private readonly tenants: Record<string, { weight: number; maxRunning?: number }>
  private readonly acked: AckedJob[] = []
  /** Jobs a client deleted, and the chance that a client deletes its job once it ended (0 in most runs). */
  private readonly deleted = new Set<string>()
  private readonly deleteChance: number
  private readonly deleteRng: Random
  private readonly stats: SimStats
  private fragmentChanges = 0
  private jobIds = 0
  private readonly retainFinishedMs: number
  /** Outputs go to blobs (inline size 0) rather than inline in registers. */
  private readonly blobOutputs: boolean
  private healed = false
  private healedAt = 0
  private quietChecks = 0
  private quietDigest = ''
  private quiescentAt: number | null = null
  /** A client made a schedule in this run. */
  private scheduled = false
  /** The schedule's name, and when its delete was accepted (virtual ms; null: not yet). */
  private scheduleName = ''
  private scheduleRemovedAt: number | null = null
  private readonly pauseToken = new Map<string, number>()
  private readonly diskToken = new Map<string, number>()
  private partitionToken = 0
  // The run's "weather", drawn from the seed.
  private readonly successP: number
  private readonly hangChance: number
  private readonly itemMs: [number, number]
  private readonly maxPermanentLosses: number

  constructor(o: SimOptions) {
    if (!Number.isInteger(o.daemons) || o.daemons < 1) throw new RangeError('daemons must be >= 1')
    this.o = {
      bugs: o.bugs ?? {},
      seed: o.seed,
      daemons: o.daemons,
      jobs: o.jobs ?? DEFAULTS.jobs,
      fragments: o.fragments ?? DEFAULTS.fragments,
      faultMs: o.faultMs ?? DEFAULTS.faultMs,
      settleLimitMs: o.settleLimitMs ?? DEFAULTS.settleLimitMs,
      faults: o.faults ?? true,
      stickyFinished: o.stickyFinished ?? false
    }
    this.bugs = o.bugs ?? {}
    this.traceFn = o.trace
    this.tracing = o.trace !== undefined
    this.rng = new Random(o.seed)
    const rng = this.rng
    const faulty = this.o.faults
    this.faults = {
      drop: faulty ? rng.pick([0, 0.01, 0.05, 0.2]) : 0,
      duplicate: faulty ? rng.pick([0, 0.01, 0.05]) : 0,
      minLatencyMs: 0.2,
      maxLatencyMs: rng.pick([2, 10, 50]),
      slowChance: faulty ? rng.pick([0, 0.01, 0.05]) : 0,
      slowMaxMs: 3000
    }
    this.successP = rng.between(0.75, 0.98)
    this.hangChance = faulty ? rng.pick([0, 0.01, 0.05]) : 0
    const fast = rng.between(30, 300)
    this.itemMs = [fast, fast * rng.between(1, 6)]
    this.maxPermanentLosses = TIMING.ackReplicas - 1
    this.net = new Network(this.clock, rng.fork(), { ...this.faults }, (to, msg) => this.deliver(to, msg))
    const width = String(o.daemons - 1).length
    this.peerIds = []
    const seams = this.seams()
    // In some runs finished jobs are compacted soon (their fragments absorbed by a summary, their
    // runs killed), so compaction races the late results, restarts and partitions of the run.
    this.retainFinishedMs = rng.chance(0.3) ? rng.between(1000, 20_000) : ENGINE_DEFAULTS.retainFinishedMs
    // In half the runs every output is a blob: copied before its success is recorded, fetched
    // by the daemons that should hold it, collected once unreferenced.
    this.blobOutputs = rng.chance(0.5)
    // Unreferenced blobs are collected at once, soon, or after the default grace.
    const blobGraceMs = rng.pick([0, 5000, ENGINE_DEFAULTS.blobGraceMs])
    // Some runs hold several fragments per slot, as a warm pool's queue does (drawn apart from
    // the run's generator, so each seed keeps the weather it had before this was drawn).
    const depth = new Random(o.seed + 0x5eed).pick([1, 1, 2, 4])
    // In some runs clients delete their jobs once they ended (drawn apart too): the tombstone
    // races late results, restarts, partitions and daemons that missed it.
    this.deleteRng = new Random(o.seed + 0xde1e7e)
    this.deleteChance = this.deleteRng.chance(0.5) ? this.deleteRng.pick([0.5, 1]) : 0
    // In half the runs jobs belong to three tenants with weights and, some, a running limit
    // (issue 13), the same on every daemon as an operator's config would be.
    const tenantRng = new Random(o.seed + 0x7e4a)
    this.tenants = tenantRng.chance(0.5)
      ? Object.fromEntries(
          ['ta', 'tb', 'tc'].map((name) => {
            const t: { weight: number; maxRunning?: number } = { weight: tenantRng.pick([1, 2, 3]) }
            if (tenantRng.chance(0.5)) t.maxRunning = tenantRng.int(1, 4)
            return [name, t]
          })
        )
      : {}
    // In a third of the runs a second task runs only on some daemons (at least two, so one
    // survives a permanent loss): its fragments are ranked only among them (and a tenant's or a
    // job's slots owned only by them).
    const few = tenantRng.chance(1 / 3) ? Math.max(2, Math.floor(o.daemons / 3)) : 0
    for (let i = 0; i < o.daemons; i++) {
      const id = `d${String(i).padStart(width, '0')}`
      if (i < few) this.sim2Hosts.add(id)
      const config: EngineConfig = {
        ...ENGINE_DEFAULTS,
        name: id,
        tasks:
          i < few ? { sim: { command: ['sim'] }, sim2: { command: ['sim'] } } : { sim: { command: ['sim'] } },
        allowAdHocCommands: false,
        capacity: rng.int(1, 4),
        shutdownGraceMs: rng.between(500, 5000),
        retainFinishedMs: this.retainFinishedMs,
        inlineOutputBytes: this.blobOutputs ? 0 : ENGINE_DEFAULTS.inlineOutputBytes,
        blobGraceMs,
        tenants: this.tenants
      }
      const d = new SimHost(this, {
        id,
        config,
        fsyncEveryMs: rng.between(100, 3000),
        monoOffset: rng.between(0, 1e9),
        wallSkew: rng.between(-MAX_WALL_SKEW_MS, MAX_WALL_SKEW_MS),
        killMs: TIMING.killMs,
        pullTimeoutMs: PULL_TIMEOUT_MS,
        depth,
        rng: rng.fork(),
        seams
      })
      this.daemons.push(d)
      this.byId.set(id, d)
      this.peerIds.push(id)
    }
    this.stats = {
      virtualMs: 0,
      healedAtMs: 0,
      convergeMs: null,
      events: 0,
      messagesSent: 0,
      messagesDelivered: 0,
      messagesDropped: 0,
      messagesDuplicated: 0,
      jobsSubmitted: 0,
      jobsAcknowledged: 0,
      jobsUnderReplicated: 0,
      jobsRejected: 0,
      jobsSucceeded: 0,
      jobsFailed: 0,
      jobsCancelled: 0,
      jobsCompacted: 0,
      jobsDeleted: 0,
      retries: 0,
      disksFull: 0,
      startsRefused: 0,
      jobsRefusedStorage: 0,
      specConflicts: 0,
      leafFragments: 0,
      claims: 0,
      hostLostReclaims: 0,
      falseHostLost: 0,
      capOvershoot: 0,
      tenantOvershoot: 0,
      drains: 0,
      hostLostFailures: 0,
      deathsJudged: 0,
      runs: 0,
      abortedRuns: 0,
      handedBack: 0,
      fencedRefusals: 0,
      executions: 0,
      duplicateExecutions: 0,
      crashes: 0,
      restarts: 0,
      pauses: 0,
      partitions: 0,
      leaves: 0,
      permanentLosses: 0,
      lostUnsyncedWrites: 0,
      outputBlobs: 0,
      blobCopies: 0,
      scheduledJobs: 0,
      steadyTicks: 0
    }
  }

  async run(): Promise<SimResult> {
    const rng = this.rng
    for (const d of this.daemons) this.clock.at(rng.between(0, 1000), () => d.start())
    const jobs = rng.int(1, this.o.jobs)
    const jobRng = rng.fork()
    for (let i = 0; i < jobs; i++) {
      this.clock.at(rng.between(500, Math.max(1000, this.o.faultMs * 0.8)), () => this.submit(jobRng, i))
    }
    // Some runs have a client make a schedule that fires every 5 (virtual) seconds through the
    // faults, and delete it at the heal (a schedule that keeps firing never lets a run go quiet).
    if (rng.chance(0.25)) {
      const scheduleRng = rng.fork()
      this.clock.at(rng.between(500, Math.max(1000, this.o.faultMs * 0.5)), () => this.schedule(scheduleRng))
    }
    // In a third of the runs an operator drains a daemon through the faults, and undrains it
    // later (at the heal at the latest); a drained daemon must never claim (drawn apart from the
    // run's generator, so each seed keeps the weather it had).
    const drainRng = new Random(this.o.seed + 0xd4a1)
    if (drainRng.chance(1 / 3)) {
      const at = drainRng.between(500, Math.max(1000, this.o.faultMs * 0.6))
      const d = drainRng.pick(this.daemons)
      this.clock.at(at, () => this.drain(d, true))
      this.clock.at(Math.min(this.o.faultMs, at + drainRng.between(1000, 10_000)), () => this.drain(d, false))
    }
    if (this.o.faults) this.clock.at(rng.between(500, 3000), () => this.chaos())
    this.clock.at(this.o.faultMs, () => this.heal())
    const limit = this.o.faultMs + this.o.settleLimitMs
    try {
      await this.clock.runAsync(
        limit,
        () => this.quiescentAt !== null || this.violations.length >= MAX_VIOLATIONS,
        settle
      )
    } catch (err) {
      // A throw from the engine or the harness is a failure of this seed, reported like any other.
      this.violate('exception', (err as Error).stack ?? String(err))
    }
    return this.finish()
  }

  /** The engine's test-only seams that plant the requested bugs. */
  private seams(): NodeSeams {
    const b = this.bugs
    const seams: NodeSeams = {}
    if (b.reuseIncarnation === true) seams.reuseIncarnation = true
    if (b.outputs !== undefined) seams.outputs = b.outputs
    if (b.perDaemonTickJobs === true) seams.schedules = { perDaemonKey: true }
    if (b.silentSchedules === true) seams.schedules = { ...seams.schedules, silentAfterThree: true }
    if (this.o.stickyFinished) seams.scheduler = { stickyFinished: true }
    const at = b.lowerTopAtMerge
    if (at !== undefined) {
      // A broken merge: at the at-th change of a held register, run-wide, it forgets the register.
      seams.state = {
        mergeFragment: (key, held, incoming) => {
          const m = mergeFragment(key, held, incoming)
          if (canonical(m) === canonical(held)) return m
          return ++this.fragmentChanges === at ? { top: 0, claim: null } : m
        }
      }
    }
    return seams
  }

  // ---- World ----

  send(from: string, to: string, msg: Message): void {
    this.net.send(from, to, msg)
  }

  reachable(from: string, to: string): boolean {
    return this.byId.get(to)?.up === true && this.net.canTalk(from, to)
  }

  private deliver(to: string, msg: Message): boolean {
    const d = this.byId.get(to)
    return d?.receive(msg) === true
  }

  trace(line: string): void {
    this.traceFn?.(`${String(Math.round(this.clock.now)).padStart(7)}ms ${line}`)
  }

  newJobId(): string {
    return `j${this.o.seed.toString(36)}x${this.jobIds++}`
  }

  planRun(job: JobRegister, _path: string, items: number): RunPlan {
    const rng = this.rng
    const timeoutMs = job.spec.timeoutSeconds * 1000
    let d = items * rng.between(this.itemMs[0], this.itemMs[1]) + rng.between(10, 300)
    if (rng.chance(this.hangChance)) d = timeoutMs * 2
    if (d >= timeoutMs) return { durationMs: timeoutMs + TIMING.killMs, exitCode: 0, timedOut: true }
    return { durationMs: d, exitCode: rng.chance(this.successP) ? 0 : rng.pick([1, 2, 3]), timedOut: false }
  }

  fenceTouch(key: string, token: number): void {
    this.fence.set(key, Math.max(this.fence.get(key) ?? 0, token))
  }

  fenceCommit(key: string, token: number): boolean {
    const seen = this.fence.get(key) ?? 0
    if (token < seen) {
      this.stats.fencedRefusals++
      return false
    }
    this.fence.set(key, token)
    return true
  }

  onChange(daemon: string, old: Entry | undefined, next: Entry, source: ChangeSource): void {
    const v = checkStep(old, next)
    if (v !== null) this.violate(v.kind, v.detail, daemon)
    // A deleted job's summary absorbs its fragments: none is stored while it holds the tombstone.
    // (A fragment and the delete in one batch, the fragment first, is stored and then absorbed
    // before this hears of it: what counts is that none is left.)
    const state = this.byId.get(daemon)?.state
    if (
      next.kind === 'frag' &&
      state?.jobs.get(next.job)?.deleted !== undefined &&
      state.register(next.job, next.specHash, next.path) !== undefined
    )
      this.violate(
        'deleted-job-returned',
        `${entryKey(next)} stored after job ${next.job} was deleted`,
        daemon
      )
    if (source !== 'local' || next.kind !== 'frag') return
    const claim = next.value.claim
    const before = old?.kind === 'frag' ? old.value.claim : null
    if (claim === null || (before !== null && sameClaimRecord(before, claim))) return
    if (claim.phase === 'RUNNING' && claim.holder === daemon && claim.seq === 1) {
      this.onClaim(daemon, entryKey(next), before, claim)
    } else if (claim.phase === 'SUCCEEDED' || claim.phase === 'FAILED' || claim.phase === 'SPLIT') {
      // A terminal claim this daemon wrote itself: the result of its own run that ended, or a
      // failure for good of a try lost with its host too often. Anything else is a result from
      // nowhere, which the final check reports (phantom-result).
      const key = entryKey(next)
      const hostLost = claim.phase === 'FAILED' && claim.reason === 'HOST_LOST'
      if (hostLost) this.stats.hostLostFailures++
      if (hostLost || this.ranToEnd.has(`${daemon}|${key}|${claimId(claim)}`))
        this.recorded.add(`${key}|${claimId(claim)}|${claim.phase}`)
    }
  }

  /** The operator drains (or undrains) a daemon: at once if it is up, at its next start if not. */
  private drain(d: SimHost, on: boolean): void {
    d.drained = on
    this.stats.drains += on ? 1 : 0
    this.trace(`operator: ${on ? 'drain' : 'undrain'} ${d.id}`)
    d.node?.drain(on)
  }

  /** A new claim of this daemon's: count it, and judge a take-over from a holder it thought lost. */
  private onClaim(daemon: string, key: string, lost: Claim | null, claim: Claim): void {
    this.stats.claims++
    if (this.byId.get(daemon)?.drained === true)
      this.violate('drained-claim', `${daemon} claimed ${key} while drained`, daemon)
    if (lost === null || claim.hostLost <= lost.hostLost) return
    this.stats.hostLostReclaims++
    // The failure detector was wrong: the holder is up, not stalled, still running this claim,
    // and no partition lies between the two (across a partition, lapsing is the point).
    if (this.byId.get(lost.holder)?.runsClaim(key, lost) === true && this.net.canTalk(daemon, lost.holder)) {
      this.stats.falseHostLost++
      this.trace(`${daemon} lapsed the lease of ${claimId(lost)} on ${key}, which is alive and running it`)
    }
  }

  onRunStart(daemon: string, run: RunIdentity): void {
    const { job, key, claim, token } = run
    this.stats.runs++
    const n = (this.runningByJob.get(job.id) ?? 0) + 1
    this.runningByJob.set(job.id, n)
    const cap = job.spec.maxConcurrency
    if (cap !== undefined) this.stats.capOvershoot = Math.max(this.stats.capOvershoot, n - cap)
    const t = (this.runningByTenant.get(job.tenant) ?? 0) + 1
    this.runningByTenant.set(job.tenant, t)
    const most = this.tenants[job.tenant]?.maxRunning
    if (most !== undefined) this.stats.tenantOvershoot = Math.max(this.stats.tenantOvershoot, t - most)
    const reused = this.ledger.handOut(key, token, claim, daemon, this.clock.now)
    if (reused !== null) this.violate('fencing-token-reused', reused, daemon)
  }

  onRunEnd(daemon: string, run: RunIdentity, how: RunEnd, executed: boolean): void {
    const { job, key, claim } = run
    this.runningByJob.set(job.id, (this.runningByJob.get(job.id) ?? 1) - 1)
    this.runningByTenant.set(job.tenant, (this.runningByTenant.get(job.tenant) ?? 1) - 1)
    // A run that ended on its own: its daemon may now record its try (and only then).
    if (how === 'recorded') this.ranToEnd.add(`${daemon}|${key}|${claimId(claim)}`)
    if (how === 'aborted') this.stats.abortedRuns++
    if (how === 'handback') this.stats.handedBack++
    if (executed) {
      this.stats.executions++
      this.executions.set(key, (this.executions.get(key) ?? 0) + 1)
    }
  }

  onTransition(daemon: string, t: Transition): void {
    if (t.to === 'dead') this.stats.deathsJudged++
    const v = this.judgements.judged(daemon, t)
    if (v !== null) this.violate(v.kind, v.detail, daemon)
  }

  onError(daemon: string, what: string): void {
    this.violate('exception', what, daemon)
  }

  private violate(kind: ViolationKind, detail: string, daemon?: string): void {
    if (this.violations.length >= MAX_VIOLATIONS) return
    this.violations.push({ kind, at: Math.round(this.clock.now), detail, ...(daemon ? { daemon } : {}) })
    this.trace(`VIOLATION ${kind}: ${detail}`)
  }

  // ---- the client ----

  /** Hosts a client can talk to: up, started, not leaving, not stalled. */
  private ready(): SimHost[] {
    return this.daemons.filter((d) => d.serving && !d.paused)
  }

  private submit(rng: Random, n: number): void {
    const ready = this.ready()
    if (ready.length === 0) {
      this.clock.after(500, () => this.submit(rng, n))
      return
    }
    // A job of the second task goes to a daemon that has it (others refuse it, 403).
    const sim2 = this.sim2Hosts.size > 0 ? ready.filter((x) => this.sim2Hosts.has(x.id)) : []
    const task = sim2.length > 0 && rng.chance(0.4) ? 'sim2' : 'sim'
    const d = rng.pick(task === 'sim2' ? sim2 : ready)
    const fragmentCount = rng.int(1, this.o.fragments)
    const fragmentSize = rng.int(1, 4)
    const items = (fragmentCount - 1) * fragmentSize + rng.int(1, fragmentSize)
    const input: JobSpecInput = {
      task,
      range: { start: 0, end: items },
      fragmentSize,
      attempts: rng.pick([2, 3, 3, 4]),
      timeoutSeconds: rng.pick([5, 10, 30]),
      priority: rng.int(0, 2),
      env: rng.chance(0.5) ? { SIM_FENCED: '1' } : {}
    }
    if (rng.chance(0.1)) input.retryOn = [1, 2]
    if (rng.chance(0.3)) input.maxConcurrency = rng.int(1, 4)
    if (rng.chance(0.2)) input.failFast = true
    if (rng.chance(0.2)) input.onFailure = 'bisect'
    // Shared idempotency keys: repeats, 422s, and rival specs accepted on both sides of a partition.
    if (rng.chance(0.3)) input.idempotencyKey = `key${rng.int(0, 2)}`
    this.stats.jobsSubmitted++
    const specHash = specHashOf(resolveSpec(input, {}))
    const cancelAt = rng.chance(0.05) ? rng.between(0, 10_000) : undefined
    // Some clients ask for their job's failed and cancelled fragments to run again, later.
    const retryAt = rng.chance(0.1) ? rng.between(2000, 15_000) : undefined
    // The daemon's own job service answers, as the HTTP API would; a daemon that dies first never does.
    const names = Object.keys(this.tenants)
    const tenant = names.length > 0 ? rng.pick(names) : 'sim'
    ;(d.node as NonNullable<SimHost['node']>).jobs.submit(input, tenant).then(
      (a) => {
        if (a.existing) return
        if (a.replicas >= TIMING.ackReplicas) {
          this.stats.jobsAcknowledged++
          this.acked.push({ id: a.id, specHash, acceptedBy: d.id, replicas: a.replicas, at: this.clock.now })
          if (cancelAt !== undefined) this.clock.after(cancelAt, () => this.cancel(rng, a.id))
          if (retryAt !== undefined) this.clock.after(retryAt, () => this.retry(rng, a.id))
          if (this.deleteRng.chance(this.deleteChance))
            this.clock.after(this.deleteRng.between(3000, 20_000), () => this.deleteJob(a.id, 20))
        } else {
          this.stats.jobsUnderReplicated++
        }
        this.trace(`client: job ${a.id} accepted by ${d.id} with ${a.replicas} replicas`)
      },
      (err: unknown) => {
        // Another spec under a known key, or a key whose job a client deleted: refused.
        if (err instanceof ShoalError && (err.code === 'IDEMPOTENCY_CONFLICT' || err.code === 'JOB_DELETED'))
          this.stats.jobsRejected++
        else if (err instanceof ShoalError && (err.code === 'STORAGE_FULL' || err.code === 'STORAGE_FAILED'))
          this.stats.jobsRefusedStorage++
        else this.violate('exception', `submit failed: ${(err as Error).stack ?? err}`, d.id)
      }
    )
  }

  /** A client makes a schedule (retried until a daemon takes it), then deletes it at the heal. */
  private schedule(rng: Random): void {
    const ready = this.ready()
    if (ready.length === 0) {
      this.clock.after(500, () => this.schedule(rng))
      return
    }
    const d = rng.pick(ready)
    const input: ScheduleInput = {
      name: 'every2s',
      cron: SIM_SCHEDULE_CRON,
      template: { task: 'sim', range: { start: 0, end: rng.int(1, 2) }, fragmentSize: 1, timeoutSeconds: 10 },
      overlapPolicy: rng.pick(['ALLOW', 'SKIP', 'CANCEL_PREVIOUS'] as const),
      startingDeadlineSeconds: rng.pick([5, 30])
    }
    this.trace(`client: schedule ${input.name} (${input.overlapPolicy}) at ${d.id}`)
    ;(d.node as NonNullable<SimHost['node']>).schedules.upsert(input, 'sim').then(
      () => {
        this.scheduled = true
        this.scheduleName = input.name
        const remove = (): void => {
          const at = this.ready()
          if (at.length === 0) {
            this.clock.after(500, remove)
            return
          }
          ;(rng.pick(at).node as NonNullable<SimHost['node']>).schedules.remove(input.name, 'sim').then(
            () => {
              this.scheduleRemovedAt ??= this.clock.now
            },
            () => {
              this.clock.after(500, remove)
            }
          )
        }
        // It runs on a while after the heal: every tick of that steady state must fire.
        this.clock.at(Math.max(this.clock.now, this.o.faultMs + SCHEDULE_STEADY_MS), remove)
      },
      (err: unknown) => {
        if (err instanceof ShoalError && (err.code === 'STORAGE_FULL' || err.code === 'STORAGE_FAILED'))
          this.clock.after(500, () => this.schedule(rng))
        else this.violate('exception', `schedule failed: ${(err as Error).stack ?? err}`, d.id)
      }
    )
  }

  /**
   * Every job a schedule made is the job of a tick of its cron: its id is the tick's, its
   * `scheduledFor` is a tick, and no replica saw rival specs for it.
   */
  private checkScheduledJobs(state: SimHost['state']): void {
    for (const job of state.jobs.values()) {
      if (job.schedule === undefined || job.scheduledFor === undefined) continue
      const tick = job.scheduledFor
      const bad =
        job.id !== idempotentJobId(job.tenant, tickJobKey(job.schedule, tick))
          ? 'its id is not its tick’s'
          : nextTick({ cron: SIM_SCHEDULE_CRON, timezone: 'UTC' }, tick - 1) !== tick
            ? 'its tick is not a tick of the cron'
            : job.conflicts !== undefined
              ? `rival specs ${job.conflicts.join(', ')}`
              : undefined
      if (bad !== undefined && this.violations.length < MAX_VIOLATIONS)
        this.violate(
          'schedule-tick',
          `job ${job.id} of ${job.schedule} for ${new Date(tick).toISOString()}: ${bad}`
        )
      else if (bad === undefined) this.stats.scheduledJobs++
    }
    this.checkSteadyTicks(state)
  }

  /**
   * In the steady state after the heal, every tick of the schedule fired (or was skipped by its
   * overlap policy): none is left owed, from a settle time after the heal until its delete.
   */
  private checkSteadyTicks(state: SimHost['state']): void {
    const removedAt = this.scheduleRemovedAt
    if (removedAt === null) return
    const reg = [...state.schedules.values()].find((r) => r.tenant === 'sim' && r.name === this.scheduleName)
    if (reg === undefined) return
    const wall = (virtual: number): number => this.wallBase + virtual
    // A tick whose turn came just before the delete may rightly not have fired (each daemon reads
    // ticks on its own clock, up to MAX_WALL_SKEW_MS off).
    const until =
      wall(removedAt) - rankingWindowMs(this.o.daemons, ENGINE_DEFAULTS.scheduleStepMs) - MAX_WALL_SKEW_MS
    const from = wall(this.healedAt + SCHEDULE_SETTLE_MS) + MAX_WALL_SKEW_MS
    for (let t = nextTick(reg.spec, from - 1); t !== null && t <= until; t = nextTick(reg.spec, t)) {
      const fired = state.jobs.has(idempotentJobId('sim', tickJobKey(reg.name, t)))
      if (fired || isHandled(reg, t, t)) {
        this.stats.steadyTicks++
        continue
      }
      if (this.violations.length < MAX_VIOLATIONS)
        this.violate(
          'schedule-tick',
          `tick ${new Date(t).toISOString()} of ${reg.name} after the heal never fired`
        )
    }
  }

  private retry(rng: Random, id: string): void {
    const ready = this.ready()
    if (ready.length === 0) return
    const d = rng.pick(ready)
    this.trace(`client: retry ${id} at ${d.id}`)
    this.stats.retries++
    ;(d.node as NonNullable<SimHost['node']>).jobs.retry(id).catch((err: unknown) => {
      // Nothing to retry, compacted, or not known there yet: refused, nothing more.
      if (!(err instanceof ShoalError)) this.violate('exception', `retry failed: ${String(err)}`, d.id)
    })
  }

  /**
   * A client deletes its job, asking again later while it has not ended (or the daemon asked
   * does not know it yet), up to `tries` times.
   */
  private deleteJob(id: string, tries: number): void {
    const ready = this.ready()
    const again = (): void => {
      if (tries > 1) this.clock.after(this.deleteRng.between(1000, 5000), () => this.deleteJob(id, tries - 1))
    }
    if (ready.length === 0) {
      again()
      return
    }
    const d = this.deleteRng.pick(ready)
    this.trace(`client: delete ${id} at ${d.id}`)
    ;(d.node as NonNullable<SimHost['node']>).jobs.delete(id).then(
      () => {
        if (!this.deleted.has(id)) this.stats.jobsDeleted++
        this.deleted.add(id)
      },
      (err: unknown) => {
        // Not finished, not known there yet, or a disk that refuses: refused; ask again later.
        if (err instanceof ShoalError) again()
        else this.violate('exception', `delete failed: ${String(err)}`, d.id)
      }
    )
  }

  private cancel(rng: Random, id: string): void {
    const ready = this.ready()
    if (ready.length === 0) return
    const d = rng.pick(ready)
    this.trace(`client: cancel ${id} at ${d.id}`)
    ;(d.node as NonNullable<SimHost['node']>).jobs.cancel(id).catch((err: unknown) => {
      // A job that finished or is not known there yet: the client's cancel is refused, nothing more.
      if (!(err instanceof ShoalError)) this.violate('exception', `cancel failed: ${String(err)}`, d.id)
    })
  }

  // ---- faults ----

  /** Daemons up and not draining: a crash or leave needs another one left serving. */
  private serving(): SimHost[] {
    return this.daemons.filter((d) => d.serving)
  }

  private chaos(): void {
    if (this.healed) return
    const rng = this.rng
    const r = rng.float()
    if (r < 0.3) this.crashOne()
    else if (r < 0.55) this.pauseOne()
    else if (r < 0.75) this.partition()
    else if (r < 0.85) this.leaveOne()
    else if (r < 0.92) this.fillDisk()
    else {
      this.net.faults = { ...this.net.faults, drop: rng.pick([0, 0.01, 0.05, 0.2, 0.5]) }
      this.trace(`chaos: drop rate ${this.net.faults.drop}`)
    }
    // Faults come faster in a larger mesh, so each daemon sees about as many as in a small one.
    this.clock.after(rng.between(400, 3000) * Math.min(1, 10 / this.daemons.length), () => this.chaos())
  }

  private crashOne(): void {
    // Keep at least one daemon alive at all times.
    if (this.serving().length < 2) return
    const rng = this.rng
    const d = rng.pick(this.daemons.filter((x) => x.up))
    this.stats.crashes++
    this.stats.lostUnsyncedWrites += d.crash()
    const fate = rng.float()
    if (fate < 0.07 && this.stats.permanentLosses < this.maxPermanentLosses && this.daemons.length >= 3) {
      d.lost = true
      this.stats.permanentLosses++
      this.trace(`chaos: ${d.id} crashed for good`)
    } else if (fate < 0.25) {
      this.trace(`chaos: ${d.id} crashed until healing (a long absence)`)
    } else {
      const back = rng.between(0.2, 6) * TIMING.suspectMs
      this.trace(`chaos: ${d.id} crashed for ${Math.round(back)}ms`)
      this.clock.after(back, () => this.restart(d))
    }
  }

  private restart(d: SimHost): void {
    if (d.up || d.lost) return
    this.stats.restarts++
    d.start()
  }

  private pauseOne(): void {
    const ready = this.daemons.filter((x) => x.serving && !x.paused)
    if (ready.length < 2) return
    const rng = this.rng
    const d = rng.pick(ready)
    const token = (this.pauseToken.get(d.id) ?? 0) + 1
    this.pauseToken.set(d.id, token)
    const ms = rng.between(1, 5) * TIMING.suspectMs
    this.stats.pauses++
    this.trace(`chaos: ${d.id} pauses for ${Math.round(ms)}ms`)
    d.pause()
    this.clock.after(ms, () => {
      if (this.pauseToken.get(d.id) === token) d.resume()
    })
  }

  private partition(): void {
    const rng = this.rng
    const ids = rng.shuffle(this.peerIds)
    let sides: string[][]
    if (rng.chance(0.4) || ids.length < 3) sides = [ids.slice(0, 1), ids.slice(1)]
    else {
      const k = rng.int(2, Math.min(3, ids.length))
      sides = Array.from({ length: k }, () => [] as string[])
      for (const id of ids) (sides[rng.int(0, k - 1)] as string[]).push(id)
    }
    const token = ++this.partitionToken
    const ms = rng.between(0.5, 6) * TIMING.suspectMs
    this.stats.partitions++
    this.net.partition(sides)
    this.trace(`chaos: partition ${sides.map((s) => `[${s.join(' ')}]`).join(' ')} for ${Math.round(ms)}ms`)
    this.clock.after(ms, () => {
      if (this.partitionToken !== token) return
      this.net.heal()
      this.trace('chaos: partition healed')
    })
  }

  private leaveOne(): void {
    const ready = this.serving().filter((x) => !x.paused)
    if (ready.length < 2 || this.serving().length < 2) return
    const rng = this.rng
    const d = rng.pick(ready)
    this.stats.leaves++
    d.leave(() => this.clock.after(rng.between(1, 5) * TIMING.suspectMs, () => this.restart(d)))
  }

  /** End of the fault phase: no more faults, every daemon that is not lost for good runs again. */
  /** A host's disk fills up for a while: its store refuses writes, then recovers by itself. */
  private fillDisk(): void {
    const ready = this.daemons.filter((x) => x.up && !x.diskFull)
    if (ready.length === 0) return
    const rng = this.rng
    const d = rng.pick(ready)
    const token = (this.diskToken.get(d.id) ?? 0) + 1
    this.diskToken.set(d.id, token)
    const ms = rng.between(0.5, 5) * TIMING.suspectMs
    this.stats.disksFull++
    this.trace(`chaos: ${d.id}'s disk is full for ${Math.round(ms)}ms`)
    d.diskFull = true
    this.clock.after(ms, () => {
      if (this.diskToken.get(d.id) !== token) return
      d.diskFull = false
      this.trace(`chaos: ${d.id}'s disk has space again`)
    })
  }

  onStartRefused(daemon: string): void {
    this.stats.startsRefused++
    const d = this.byId.get(daemon) as SimHost
    // The operator's supervisor starts it again a little later.
    this.clock.after(1000, () => this.restart(d))
  }

  private heal(): void {
    this.healed = true
    for (const d of this.daemons) {
      this.diskToken.set(d.id, (this.diskToken.get(d.id) ?? 0) + 1)
      d.diskFull = false
    }
    this.healedAt = this.clock.now
    this.partitionToken++
    this.net.heal()
    this.net.faults = { ...this.faults, drop: 0, duplicate: 0, slowChance: 0 }
    this.trace('heal: faults stop')
    for (const d of this.daemons) {
      if (d.lost) continue
      if (d.paused) {
        this.pauseToken.set(d.id, (this.pauseToken.get(d.id) ?? 0) + 1)
        d.resume()
      } else if (!d.up) this.clock.after(this.rng.between(0, 500), () => this.restart(d))
    }
    this.clock.after(QUIET_CHECK_MS, () => this.checkQuiet())
  }

  // ---- the end ----

  private live(): SimHost[] {
    return this.daemons.filter((d) => !d.lost)
  }

  private checkQuiet(): void {
    const live = this.live()
    // A schedule still there keeps making jobs: the run goes on until the client deleted it.
    let quiet = !(this.scheduled && this.scheduleRemovedAt === null)
    quiet &&= live.every((d) => d.up && !d.paused && d.synced && d.idle)
    const digest = quiet ? (live[0] as SimHost).state.stateDigest() : ''
    if (quiet) quiet = live.every((d) => d.state.stateDigest() === digest)
    if (quiet) {
      const state = (live[0] as SimHost).state
      for (const job of state.jobs.values()) {
        if (!isTerminalJobState(jobView(job, state.fragmentsOf(job.id)).state)) {
          quiet = false
          break
        }
      }
    }
    // Every output blob is where it should be: on each live daemon that should hold it.
    if (quiet && this.misplacedBlob(live) !== undefined) quiet = false
    if (quiet && digest === this.quietDigest) this.quietChecks++
    else this.quietChecks = quiet ? 1 : 0
    this.quietDigest = digest
    if (this.quietChecks >= QUIET_CHECKS) {
      this.quiescentAt = this.clock.now
      return
    }
    this.clock.after(QUIET_CHECK_MS, () => this.checkQuiet())
  }

  private finish(): SimResult {
    const live = this.live()
    const at = Math.round(this.clock.now)
    if (this.quiescentAt === null && this.violations.length < MAX_VIOLATIONS) {
      this.violate('not-quiescent', this.whyNotQuiet(live))
    }
    if (this.bugs.dropAckedJob === true && this.acked.length > 0) {
      // One replica loses an acknowledged job and all its registers, as a bug would.
      ;(live[live.length - 1] as SimHost).state.dropJob((this.acked[0] as AckedJob).id)
    }
    if (this.bugs.forgetDelete === true) {
      // One replica holds a deleted job as if it never was.
      const state = (live[live.length - 1] as SimHost).state
      const id = [...this.deleted][0]
      const job = id === undefined ? undefined : state.jobs.get(id)
      if (job !== undefined) {
        const { deleted: _, ...kept } = job
        state.jobs.set(job.id, kept)
      }
    }
    if (this.bugs.corruptReplica === true) {
      // A register written by nobody's run lands on one replica.
      const state = (live[0] as SimHost).state
      const job = [...state.jobs.values()][0]
      if (job !== undefined) {
        const top = (state.fragment(job.id, '0')?.top ?? 0) + 5
        const ghost: Claim = {
          epoch: top,
          holder: 'ghost',
          incarnation: 1,
          seq: 2,
          attempt: 1,
          phase: 'SUCCEEDED',
          hostLost: 0
        }
        state.merge({
          kind: 'frag',
          job: job.id,
          specHash: job.specHash,
          path: '0',
          value: { top, claim: ghost }
        })
      }
    }
    if (live[0] !== undefined && this.scheduled) this.checkScheduledJobs(live[0].state)
    const final = checkFinal({
      live: live.map((d) => ({ id: d.id, state: d.state })),
      acked: this.acked,
      deleted: this.deleted,
      recorded: this.recorded,
      at
    })
    for (const v of final) if (this.violations.length < MAX_VIOLATIONS) this.violations.push(v)
    // No recorded output is lost: every blob a register references is on some daemon still here.
    const refNode = live[0]?.node
    if (refNode?.ready === true) {
      for (const use of refNode.outputs.referenced().values()) {
        this.stats.outputBlobs++
        this.stats.blobCopies += live.filter((d) => d.blobs.holds(use.blob.sha256)).length
        if (live.some((d) => d.blobs.holds(use.blob.sha256))) continue
        if (this.violations.length < MAX_VIOLATIONS)
          this.violate(
            'output-lost',
            `blob ${use.blob.sha256} (run by ${use.runner ?? '?'}) is on no daemon left`
          )
      }
    }

    const s = this.stats
    const ref = live[0] as SimHost
    for (const job of ref.state.jobs.values()) {
      const frags = ref.state.fragmentsOf(job.id)
      const state = jobView(job, frags).state
      if (state === 'SUCCEEDED') s.jobsSucceeded++
      else if (state === 'FAILED') s.jobsFailed++
      else if (state === 'CANCELLED') s.jobsCancelled++
      if (job.finished !== undefined) s.jobsCompacted++
      if (job.conflicts !== undefined) s.specConflicts++
      s.leafFragments += leafFragments(job.spec, frags).length
    }
    for (const n of this.executions.values()) if (n > 1) s.duplicateExecutions++
    s.virtualMs = at
    s.healedAtMs = Math.round(this.healedAt)
    s.convergeMs = this.quiescentAt === null ? null : Math.round(this.quiescentAt - this.healedAt)
    s.events = this.clock.executed
    s.messagesSent = this.net.stats.sent
    s.messagesDelivered = this.net.stats.delivered
    s.messagesDropped = this.net.stats.dropped
    s.messagesDuplicated = this.net.stats.duplicated
    const digest = sha256Hex(
      canonical({
        replicas: this.daemons.map((d) => [
          d.id,
          d.lost,
          d.node?.ready === true ? d.state.stateDigest() : null
        ]),
        stats: s,
        violations: this.violations
      })
    ).slice(0, 32)
    return {
      ok: this.violations.length === 0,
      seed: this.o.seed,
      daemons: this.o.daemons,
      violations: this.violations,
      stats: s,
      digest,
      replay: replayCommand(this.o)
    }
  }

  /** An output blob missing on a live daemon that should hold it (as the first live daemon ranks them). */
  private misplacedBlob(live: SimHost[]): string | undefined {
    const ref = live[0]
    if (ref?.node === undefined) return undefined
    const outputs = ref.node.outputs
    for (const use of outputs.referenced().values()) {
      for (const holder of outputs.holders(use.blob.sha256, use.runner)) {
        if (!this.byId.get(holder)?.blobs.holds(use.blob.sha256))
          return `blob ${use.blob.sha256.slice(0, 12)} not on ${holder}`
      }
    }
    return undefined
  }

  /** What kept the run from converging, for the report. */
  private whyNotQuiet(live: SimHost[]): string {
    const why: string[] = []
    const misplaced = this.misplacedBlob(live)
    if (misplaced !== undefined) why.push(misplaced)
    for (const d of live) {
      if (!d.up) why.push(`${d.id} down`)
      else if (d.paused) why.push(`${d.id} paused`)
      else if (!d.synced) why.push(`${d.id} not synced`)
      else if (!d.idle) why.push(`${d.id} busy (${d.busy})`)
    }
    const digests = new Set(live.map((d) => d.state.stateDigest()))
    if (digests.size > 1) why.push(`${digests.size} distinct replica digests`)
    const ref = live[0]
    if (ref !== undefined) {
      for (const job of ref.state.jobs.values()) {
        const v = jobView(job, ref.state.fragmentsOf(job.id))
        if (!isTerminalJobState(v.state))
          why.push(`job ${job.id} ${v.state} ${JSON.stringify(v.statusSummary)}`)
      }
    }
    return why.slice(0, 12).join('; ') || 'unknown'
  }
}

/** Let the engine's promise chains run out before the next event (they are all microtasks). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}
