import {
  checkSample,
  decodeSketch,
  METRIC_LIMITS,
  type MetricRegister,
  type MetricSeries
} from './metrics.ts'
import {
  type BlobRef,
  type Claim,
  type FinishedSummary,
  type FragmentRegister,
  type JobRegister,
  MAX_TRIES_KEPT,
  type Outcome,
  type OutputPart,
  type Phase,
  type StatusReason,
  TRY_LOG_BYTES,
  type TryRecord
} from './register.ts'
import {
  HANDLED_KEPT,
  OVERLAP_POLICIES,
  type OverlapPolicy,
  resolveScheduleSpec,
  type ScheduleRegister,
  type ScheduleSpec,
  scheduleId
} from './schedule.ts'
import { specHashOf } from './spec.ts'
import type { Entry } from './state.ts'

/**
 * Wire messages: one type field, one codec, and a validator for every decoded message. Nothing
 * from the network reaches a merge before it passed these checks, with bounded sizes.
 */

/** A daemon's membership record, carried by its heartbeats. Highest (incarnation, seq) wins. */
export interface PeerRecord {
  peerId: string
  name: string
  incarnation: number
  seq: number
  multiaddrs: string[]
  api: string
  capacity: number
  running: number
  /** True once it completed a sync since start (only synced peers are ranked for claims). */
  synced: boolean
  /** False while it drains before a graceful leave: it takes no new claims, its leases stay live. */
  claiming: boolean
  /** True once it has left (gracefully): its leases lapse at once. */
  leaving: boolean
  /** Peers this daemon currently suspects or holds dead (SWIM: a suspect that sees itself here pauses claims). */
  suspects: string[]
  /**
   * Its heartbeat period now, ms: larger than heartbeatMs in a large mesh (see membership's
   * heartbeat budget). Peers judge its silence against it. Absent: heartbeatMs (older daemons).
   */
  every?: number
  /**
   * The tasks it runs (its config's names) and whether it runs ad-hoc commands: fragments are
   * ranked only among the daemons that can run them. Absent: any task (older daemons).
   */
  tasks?: string[]
  adHoc?: boolean
  /** True while an operator has it drained: a member that claims nothing. */
  drained?: boolean
  /** Its Shoal version (package.json's), for operators. Absent: an older daemon. */
  version?: string
}

export type GossipMessage =
  | { t: 'hb'; peer: PeerRecord }
  | { t: 'delta'; from: string; entries: Entry[] }
  | DrainOrder

/**
 * An operator's drain (or undrain) of one daemon, sent by the daemon the operator asked (signed
 * by it, like any gossip) and applied only by the daemon it names; `at` (the sender's wall clock)
 * orders two orders, so a late copy of an older one changes nothing.
 */
export interface DrainOrder {
  t: 'drain'
  from: string
  target: string
  drain: boolean
  at: number
}

export type SyncFrame =
  /** A pull: my digests; `only` restricts the answer to those jobs. */
  | { t: 'digest'; jobs: Record<string, string>; only?: string[] }
  | { t: 'entries'; entries: Entry[] }
  | { t: 'end' }
  /** Answer to a push: the pushed registers are synced to disk here. */
  | { t: 'ack' }

export const LIMITS = {
  /** Largest gossip message or sync frame accepted, bytes. */
  maxMessageBytes: 4 * 1024 * 1024,
  maxEntriesPerMessage: 10_000,
  maxIdLength: 128,
  maxStringLength: 1024,
  maxAddrs: 32,
  maxSuspects: 256,
  /** Most task names a daemon announces. */
  maxTasks: 1024,
  /** Longest version string a daemon announces. */
  maxVersionLength: 64,
  maxOutputBytes: 4 * 1024 * 1024
}

export class WireError extends Error {
  readonly code = 'WIRE_INVALID'
}

const enc = new TextEncoder()
const dec = new TextDecoder('utf-8', { fatal: true })

export function encodeMessage(msg: GossipMessage | SyncFrame): Uint8Array {
  return enc.encode(JSON.stringify(msg))
}

function parse(bytes: Uint8Array): unknown {
  if (bytes.byteLength > LIMITS.maxMessageBytes) throw new WireError(`message of ${bytes.byteLength} bytes`)
  try {
    return JSON.parse(dec.decode(bytes))
  } catch (err) {
    throw new WireError(`not JSON: ${(err as Error).message}`)
  }
}

export function decodeGossip(bytes: Uint8Array): GossipMessage {
  const m = parse(bytes)
  if (!isObj(m)) throw new WireError('not an object')
  if (m.t === 'hb') return { t: 'hb', peer: checkPeer(m.peer) }
  if (m.t === 'delta') {
    return { t: 'delta', from: checkId(m.from, 'from'), entries: checkEntries(m.entries) }
  }
  if (m.t === 'drain') {
    return {
      t: 'drain',
      from: checkId(m.from, 'from'),
      target: checkId(m.target, 'target'),
      drain: checkBool(m.drain, 'drain'),
      at: checkInt(m.at, 'at')
    }
  }
  throw new WireError(`unknown message type ${String(m.t).slice(0, 20)}`)
}

export function decodeSyncFrame(bytes: Uint8Array): SyncFrame {
  const m = parse(bytes)
  if (!isObj(m)) throw new WireError('not an object')
  if (m.t === 'end') return { t: 'end' }
  if (m.t === 'ack') return { t: 'ack' }
  if (m.t === 'entries') return { t: 'entries', entries: checkEntries(m.entries) }
  if (m.t === 'digest') {
    if (!isObj(m.jobs)) throw new WireError('digest.jobs')
    const jobs: Record<string, string> = {}
    for (const [id, d] of Object.entries(m.jobs)) {
      checkId(id, 'digest job id')
      if (typeof d !== 'string' || !/^[0-9a-f]{64}$/.test(d)) throw new WireError('digest value')
      jobs[id] = d
    }
    if (m.only === undefined) return { t: 'digest', jobs }
    if (!Array.isArray(m.only) || m.only.length > 1000) throw new WireError('digest.only')
    return { t: 'digest', jobs, only: m.only.map((id) => checkId(id, 'digest.only')) }
  }
  throw new WireError(`unknown frame type ${String(m.t).slice(0, 20)}`)
}

type Obj = Record<string, unknown>

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function fail(what: string): never {
  throw new WireError(`invalid ${what}`)
}

/** A register or job id as the wire accepts it (WireError otherwise). */
export function checkId(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > LIMITS.maxIdLength || !/^[\w.:-]+$/.test(v))
    fail(what)
  return v
}

function checkInt(v: unknown, what: string, min = 0): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) fail(what)
  return v
}

/** A heartbeat period a peer may announce: at least 1 ms, at most a minute. */
function checkEvery(v: unknown): number {
  const n = checkInt(v, 'peer.every', 1)
  if (n > 60_000) fail('peer.every')
  return n
}

function checkStr(v: unknown, what: string, max = LIMITS.maxStringLength): string {
  if (typeof v !== 'string' || v.length > max) fail(what)
  return v
}

function optInt(v: unknown, what: string): number | undefined {
  return v === undefined ? undefined : checkInt(v, what)
}

export function checkPeer(v: unknown): PeerRecord {
  if (!isObj(v)) fail('peer')
  if (!Array.isArray(v.multiaddrs) || v.multiaddrs.length > LIMITS.maxAddrs) fail('peer.multiaddrs')
  if (typeof v.synced !== 'boolean' || typeof v.leaving !== 'boolean' || typeof v.claiming !== 'boolean') {
    fail('peer flags')
  }
  if (!Array.isArray(v.suspects) || v.suspects.length > LIMITS.maxSuspects) fail('peer.suspects')
  return {
    peerId: checkId(v.peerId, 'peer.peerId'),
    name: checkStr(v.name, 'peer.name', 128),
    incarnation: checkInt(v.incarnation, 'peer.incarnation'),
    seq: checkInt(v.seq, 'peer.seq'),
    multiaddrs: v.multiaddrs.map((a) => checkStr(a, 'peer.multiaddr', 256)),
    api: checkStr(v.api, 'peer.api', 256),
    capacity: checkInt(v.capacity, 'peer.capacity'),
    running: checkInt(v.running, 'peer.running'),
    synced: v.synced,
    claiming: v.claiming,
    leaving: v.leaving,
    suspects: v.suspects.map((x) => checkId(x, 'peer.suspects')),
    ...(v.every !== undefined ? { every: checkEvery(v.every) } : {}),
    ...(v.tasks !== undefined ? { tasks: checkTasks(v.tasks) } : {}),
    ...(v.adHoc !== undefined ? { adHoc: checkBool(v.adHoc, 'peer.adHoc') } : {}),
    ...(v.drained !== undefined ? { drained: checkBool(v.drained, 'peer.drained') } : {}),
    ...(v.version !== undefined
      ? { version: checkStr(v.version, 'peer.version', LIMITS.maxVersionLength) }
      : {})
  }
}

function checkTasks(v: unknown): string[] {
  if (!Array.isArray(v) || v.length > LIMITS.maxTasks) fail('peer.tasks')
  return v.map((t) => checkStr(t, 'peer.tasks', 64))
}

function checkBool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') fail(what)
  return v
}

function checkEntries(v: unknown): Entry[] {
  if (!Array.isArray(v) || v.length > LIMITS.maxEntriesPerMessage) fail('entries')
  return v.map(checkEntry)
}

const PATH_RE = /^(0|[1-9][0-9]{0,9})(\.[01]){0,40}$/
const HASH_RE = /^[0-9a-f]{32}$/
const PHASES: readonly Phase[] = ['RUNNABLE', 'RUNNING', 'SUCCEEDED', 'SPLIT', 'FAILED']
const REASONS: readonly StatusReason[] = [
  'EXIT_CODE',
  'TIMEOUT',
  'HOST_LOST',
  'CANCELLED',
  'OUTPUT_TOO_LARGE',
  'SPAWN_ERROR'
]

export function checkEntry(v: unknown): Entry {
  if (!isObj(v)) fail('entry')
  if (v.kind === 'job') {
    const id = checkId(v.id, 'job id')
    const value = checkJob(v.value)
    if (value.id !== id) fail('job id mismatch')
    return { kind: 'job', id, value }
  }
  if (v.kind === 'frag') {
    const job = checkId(v.job, 'frag.job')
    if (typeof v.specHash !== 'string' || !HASH_RE.test(v.specHash)) fail('frag.specHash')
    if (typeof v.path !== 'string' || !PATH_RE.test(v.path)) fail('frag.path')
    return { kind: 'frag', job, specHash: v.specHash, path: v.path, value: checkFragment(v.value) }
  }
  if (v.kind === 'metric') {
    const job = checkId(v.job, 'metric.job')
    const peer = checkId(v.peer, 'metric.peer')
    const value = checkMetricRegister(v.value)
    if (value.job !== job || value.peer !== peer) fail('metric key mismatch')
    return { kind: 'metric', job, peer, value }
  }
  if (v.kind === 'sched') {
    const id = checkId(v.id, 'sched id')
    const value = checkSchedule(v.value)
    if (value.id !== id) fail('sched id mismatch')
    return { kind: 'sched', id, value }
  }
  fail('entry kind')
}

function checkSchedule(v: unknown): ScheduleRegister {
  if (!isObj(v)) fail('sched')
  const tenant = checkStr(v.tenant, 'sched.tenant', 128)
  const name = checkStr(v.name, 'sched.name', 128)
  const id = checkId(v.id, 'sched.id')
  if (id !== scheduleId(tenant, name)) fail('sched.id (does not match tenant and name)')
  if (typeof v.paused !== 'boolean' || typeof v.deleted !== 'boolean') fail('sched flags')
  if (!isObj(v.spec)) fail('sched.spec')
  const s = v.spec
  if (!isObj(s.template) || typeof s.template.task !== 'string') fail('sched.spec.template')
  if (!OVERLAP_POLICIES.includes(s.overlapPolicy as OverlapPolicy)) fail('sched.spec.overlapPolicy')
  if (typeof s.startingDeadlineSeconds !== 'number' || !(s.startingDeadlineSeconds >= 1))
    fail('sched.spec.startingDeadlineSeconds')
  let spec: ScheduleSpec
  try {
    spec = resolveScheduleSpec({
      name,
      cron: checkStr(s.cron, 'sched.spec.cron', 256),
      timezone: checkStr(s.timezone, 'sched.spec.timezone', 64),
      template: s.template as unknown as ScheduleSpec['template'],
      overlapPolicy: s.overlapPolicy as OverlapPolicy,
      startingDeadlineSeconds: s.startingDeadlineSeconds
    })
  } catch {
    fail('sched.spec')
  }
  const floor = checkTime(v.floor, 'sched.floor')
  const handled = checkHandled(v.handled)
  // Handled ticks are after the floor (the floor covers the rest): the merge keeps them so.
  if (handled.length > 0 && (handled[0] as number) <= floor) fail('sched.handled (at or before the floor)')
  return {
    id,
    tenant,
    name,
    version: checkTime(v.version, 'sched.version'),
    spec,
    paused: v.paused,
    deleted: v.deleted,
    createdAt: checkTime(v.createdAt, 'sched.createdAt'),
    updatedAt: checkTime(v.updatedAt, 'sched.updatedAt'),
    floor,
    handled
  }
}

/** The last instant a Date can hold (ms): times and versions beyond it break every daemon. */
const MAX_TIME_MS = 8.64e15

/** A time in ms since the epoch that a Date can hold (and a version, which counts like one). */
function checkTime(v: unknown, what: string): number {
  const n = checkInt(v, what)
  if (n > MAX_TIME_MS) fail(what)
  return n
}

function checkMetricRegister(v: unknown): MetricRegister {
  if (!isObj(v)) fail('metric')
  if (!Array.isArray(v.series) || v.series.length > METRIC_LIMITS.seriesOnWire) fail('metric.series')
  return {
    job: checkId(v.job, 'metric.job'),
    peer: checkId(v.peer, 'metric.peer'),
    incarnation: checkInt(v.incarnation, 'metric.incarnation'),
    seq: checkInt(v.seq, 'metric.seq'),
    series: v.series.map(checkSeries),
    dropped: checkInt(v.dropped, 'metric.dropped')
  }
}

function checkSeries(v: unknown): MetricSeries {
  if (!isObj(v)) fail('metric.series')
  const sample = checkSample({ name: v.name, value: 0, labels: v.labels })
  if (typeof sample === 'string') fail(`metric.series: ${sample}`)
  const num = (x: unknown, what: string): number => {
    if (typeof x !== 'number' || !Number.isFinite(x)) fail(what)
    return x
  }
  if (typeof v.sketch !== 'string' || v.sketch.length > METRIC_LIMITS.sketchBytes)
    fail('metric.series.sketch')
  try {
    decodeSketch(v.sketch)
  } catch {
    fail('metric.series.sketch')
  }
  return {
    task: checkStr(v.task, 'metric.series.task', 128),
    name: sample.name,
    labels: sample.labels ?? {},
    count: checkInt(v.count, 'metric.series.count'),
    sum: num(v.sum, 'metric.series.sum'),
    min: num(v.min, 'metric.series.min'),
    max: num(v.max, 'metric.series.max'),
    sketch: v.sketch
  }
}

/** Handled ticks: at most HANDLED_KEPT, ascending, no repeats. */
function checkHandled(v: unknown): number[] {
  if (!Array.isArray(v) || v.length > HANDLED_KEPT) fail('sched.handled')
  const out = v.map((t) => checkTime(t, 'sched.handled'))
  for (let i = 1; i < out.length; i++) if ((out[i] as number) <= (out[i - 1] as number)) fail('sched.handled')
  return out
}

function checkFragment(v: unknown): FragmentRegister {
  if (!isObj(v)) fail('fragment')
  const top = checkInt(v.top, 'fragment.top')
  const claim = v.claim === null ? null : checkClaim(v.claim)
  return { top, claim }
}

function checkClaim(v: unknown): Claim {
  if (!isObj(v)) fail('claim')
  if (!PHASES.includes(v.phase as Phase)) fail('claim.phase')
  if (v.reason !== undefined && !REASONS.includes(v.reason as StatusReason)) fail('claim.reason')
  const claim: Claim = {
    epoch: checkInt(v.epoch, 'claim.epoch', 1),
    holder: checkId(v.holder, 'claim.holder'),
    incarnation: checkInt(v.incarnation, 'claim.incarnation'),
    seq: checkInt(v.seq, 'claim.seq'),
    attempt: checkInt(v.attempt, 'claim.attempt', 1),
    phase: v.phase as Phase,
    hostLost: checkInt(v.hostLost, 'claim.hostLost')
  }
  if (v.reason !== undefined) claim.reason = v.reason as StatusReason
  const generation = optInt(v.generation, 'claim.generation')
  if (generation !== undefined) claim.generation = generation
  const startedAt = optInt(v.startedAt, 'claim.startedAt')
  if (startedAt !== undefined) claim.startedAt = startedAt
  const finishedAt = optInt(v.finishedAt, 'claim.finishedAt')
  if (finishedAt !== undefined) claim.finishedAt = finishedAt
  if (v.outcome !== undefined) claim.outcome = checkOutcome(v.outcome)
  if (v.tries !== undefined) {
    if (!Array.isArray(v.tries) || v.tries.length > MAX_TRIES_KEPT) fail('claim.tries')
    claim.tries = v.tries.map(checkTry)
  }
  return claim
}

function checkTry(v: unknown): TryRecord {
  if (!isObj(v)) fail('claim.tries')
  if (v.reason !== undefined && !REASONS.includes(v.reason as StatusReason)) fail('try.reason')
  const t: TryRecord = {
    attempt: checkInt(v.attempt, 'try.attempt', 1),
    epoch: checkInt(v.epoch, 'try.epoch', 1),
    holder: checkId(v.holder, 'try.holder'),
    exitCode: v.exitCode === null ? null : checkInt(v.exitCode, 'try.exitCode')
  }
  if (v.reason !== undefined) t.reason = v.reason as StatusReason
  const generation = optInt(v.generation, 'try.generation')
  if (generation !== undefined) t.generation = generation
  const startedAt = optInt(v.startedAt, 'try.startedAt')
  if (startedAt !== undefined) t.startedAt = startedAt
  const finishedAt = optInt(v.finishedAt, 'try.finishedAt')
  if (finishedAt !== undefined) t.finishedAt = finishedAt
  if (v.log !== undefined) t.log = checkStr(v.log, 'try.log', TRY_LOG_BYTES)
  if (v.logBlob !== undefined) t.logBlob = checkBlobRef(v.logBlob, 'try.logBlob')
  return t
}

function checkOutcome(v: unknown): Outcome {
  if (!isObj(v)) fail('outcome')
  const exitCode = v.exitCode === null ? null : checkInt(v.exitCode, 'outcome.exitCode')
  if (typeof v.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(v.sha256)) fail('outcome.sha256')
  const out: Outcome = { exitCode, bytes: checkInt(v.bytes, 'outcome.bytes'), sha256: v.sha256 }
  if (v.signal !== undefined) out.signal = checkStr(v.signal, 'outcome.signal', 32)
  if (v.output !== undefined) out.output = checkStr(v.output, 'outcome.output', LIMITS.maxOutputBytes)
  if (v.log !== undefined) out.log = checkStr(v.log, 'outcome.log', 64 * 1024)
  if (v.blob !== undefined) {
    if (v.blob !== true || out.output !== undefined) fail('outcome.blob')
    out.blob = true
  }
  return out
}

function checkBlobRef(v: unknown, what: string): BlobRef {
  if (!isObj(v) || typeof v.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(v.sha256)) fail(what)
  return { sha256: v.sha256, bytes: checkInt(v.bytes, `${what}.bytes`) }
}

const FINISHED_STATES = ['SUCCEEDED', 'FAILED', 'CANCELLED'] as const

function checkFinished(v: unknown): FinishedSummary {
  if (!isObj(v) || !isObj(v.statusSummary)) fail('job.finished')
  if (!FINISHED_STATES.includes(v.state as (typeof FINISHED_STATES)[number])) fail('job.finished.state')
  const counts = v.statusSummary
  const statusSummary = {
    RUNNABLE: checkInt(counts.RUNNABLE, 'finished.RUNNABLE'),
    RUNNING: checkInt(counts.RUNNING, 'finished.RUNNING'),
    SUCCEEDED: checkInt(counts.SUCCEEDED, 'finished.SUCCEEDED'),
    FAILED: checkInt(counts.FAILED, 'finished.FAILED'),
    CANCELLED: checkInt(counts.CANCELLED, 'finished.CANCELLED')
  }
  const f: FinishedSummary = {
    state: v.state as FinishedSummary['state'],
    statusSummary,
    fragments: checkInt(v.fragments, 'finished.fragments'),
    startedAt: v.startedAt === null ? null : checkInt(v.startedAt, 'finished.startedAt'),
    finishedAt: v.finishedAt === null ? null : checkInt(v.finishedAt, 'finished.finishedAt'),
    compactedAt: checkInt(v.compactedAt, 'finished.compactedAt')
  }
  if (v.output !== undefined) {
    if (!Array.isArray(v.output) || v.output.length > 10_000_000) fail('finished.output')
    let total = 0
    f.output = v.output.map((o): OutputPart => {
      if (typeof o !== 'string') return checkBlobRef(o, 'finished.output')
      const s = checkStr(o, 'finished.output', LIMITS.maxOutputBytes)
      total += s.length
      if (total > LIMITS.maxMessageBytes) fail('finished.output (too large)')
      return s
    })
  }
  return f
}

function checkJob(v: unknown): JobRegister {
  if (!isObj(v)) fail('job')
  if (typeof v.specHash !== 'string' || !HASH_RE.test(v.specHash)) fail('job.specHash')
  if (typeof v.cancelled !== 'boolean') fail('job.cancelled')
  if (!isObj(v.spec)) fail('job.spec')
  const s = v.spec
  checkStr(s.task, 'spec.task', 128)
  if (s.command !== undefined) {
    if (!Array.isArray(s.command) || s.command.length === 0 || s.command.length > 256) fail('spec.command')
    for (const a of s.command) checkStr(a, 'spec.command', 4096)
  }
  for (const f of ['itemCount', 'fragmentCount', 'attempts', 'timeoutSeconds'] as const) {
    if (typeof s[f] !== 'number' || !Number.isFinite(s[f]) || (s[f] as number) < 0) fail(`spec.${f}`)
  }
  checkInt(s.fragmentSize, 'spec.fragmentSize', 1)
  if (typeof s.priority !== 'number' || !Number.isFinite(s.priority)) fail('spec.priority')
  if (s.items !== undefined && !Array.isArray(s.items)) fail('spec.items')
  if (s.range !== undefined) {
    if (!isObj(s.range)) fail('spec.range')
    checkInt(s.range.start, 'spec.range.start', Number.MIN_SAFE_INTEGER)
    checkInt(s.range.end, 'spec.range.end', Number.MIN_SAFE_INTEGER)
  }
  if ((s.items === undefined) === (s.range === undefined)) fail('spec items/range')
  const count = Array.isArray(s.items)
    ? s.items.length
    : Math.max(0, (s.range as { end: number; start: number }).end - (s.range as { start: number }).start)
  if (count !== s.itemCount || s.fragmentCount !== Math.ceil(count / (s.fragmentSize as number))) {
    fail('spec counts')
  }
  if (!isObj(s.env)) fail('spec.env')
  if (s.failFast !== undefined && s.failFast !== true) fail('spec.failFast')
  if (s.onFailure !== undefined && s.onFailure !== 'bisect') fail('spec.onFailure')
  if (specHashOf(s as unknown as JobRegister['spec']) !== v.specHash)
    fail('job.specHash (does not match spec)')
  const job: JobRegister = {
    id: checkId(v.id, 'job.id'),
    tenant: checkStr(v.tenant, 'job.tenant', 128),
    spec: s as unknown as JobRegister['spec'],
    specHash: v.specHash,
    createdAt: checkInt(v.createdAt, 'job.createdAt'),
    cancelled: v.cancelled,
    acceptedBy: checkId(v.acceptedBy, 'job.acceptedBy')
  }
  if (v.finished !== undefined) job.finished = checkFinished(v.finished)
  if (v.deleted !== undefined) {
    // A deleted job is always compacted too: its summary is what absorbs its fragments.
    if (job.finished === undefined) fail('job.deleted (without finished)')
    job.deleted = checkInt(v.deleted, 'job.deleted')
  }
  if (v.schedule !== undefined || v.scheduledFor !== undefined) {
    job.schedule = checkStr(v.schedule, 'job.schedule', 128)
    job.scheduledFor = checkInt(v.scheduledFor, 'job.scheduledFor')
  }
  if (v.retries !== undefined) job.retries = checkInt(v.retries, 'job.retries')
  if (v.cancelledRetries !== undefined)
    job.cancelledRetries = checkInt(v.cancelledRetries, 'job.cancelledRetries')
  if (v.conflicts !== undefined) {
    if (!Array.isArray(v.conflicts) || v.conflicts.length > 64) fail('job.conflicts')
    job.conflicts = v.conflicts.map((c) => {
      if (typeof c !== 'string' || !HASH_RE.test(c)) fail('job.conflicts')
      return c
    })
  }
  return job
}
