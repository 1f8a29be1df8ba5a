import type {
  ByteStream,
  FailureRecord,
  FragmentRecord,
  JobMetrics,
  JobSummary,
  JobsApi,
  SubmitAnswer,
  TryMeta,
  TryView,
  Viewer
} from '../core/api.ts'
import type { EngineConfig } from '../core/config.ts'
import { ShoalError } from '../core/errors.ts'
import { rankPeers } from '../core/hrw.ts'
import type { Clock, Log } from '../core/ports.ts'
import {
  type Claim,
  type FinishedSummary,
  isCancelled,
  type JobRegister,
  type OutputPart,
  outputBlob
} from '../core/register.ts'
import { SCHEDULE_KEY_PREFIX } from '../core/schedule.ts'
import { chooseFragmentSize, updateSecondsPerItem } from '../core/sizing.ts'
import {
  DEFAULT_TIMEOUT_SECONDS,
  idempotentJobId,
  itemCountOf,
  type JobSpecInput,
  type ResolvedSpec,
  resolveSpec,
  specHashOf
} from '../core/spec.ts'
import { itemInterval } from '../core/split.ts'
import { type Entry, entryJob } from '../core/state.ts'
import {
  fragmentView,
  isTerminalJobState,
  type JobState,
  jobStopped,
  jobViewOf,
  leafFragments
} from '../core/status.ts'
import type { Mesh } from '../mesh/mesh.ts'
import type { Replica } from '../store/replica.ts'
import type { MetricsKeeper } from './metrics.ts'
import type { BlobUse, OutputKeeper } from './outputs.ts'

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString())

/** Where a job came from when a schedule made it. */
export interface JobOrigin {
  schedule: string
  scheduledFor: number
}

export interface JobServiceComponents {
  replica: Replica
  mesh: Mesh
  clock: Clock
  logger: Log
  /** A fresh job id (a ULID in the daemon; a seeded id in the simulator). */
  newId: () => string
  /** Reads output blobs, from here or from their holders. */
  outputs: Pick<OutputKeeper, 'read' | 'unavailable'>
  /** Called once per job accepted here (metrics). */
  onAccepted?: () => void
  /** Task metrics, aggregated over the mesh. */
  metrics: Pick<MetricsKeeper, 'jobMetrics'>
}

/**
 * The job service: accepts jobs (validated against this daemon's tasks, synced here and pushed
 * to ackReplicas - 1 peers before the 202), cancels them, answers every query for the whole
 * mesh from the replicated state, and compacts finished jobs. The HTTP API reaches it through
 * `JobsApi`; the simulator's clients call it directly.
 */
export class JobService implements JobsApi {
  private readonly cfg: EngineConfig
  private readonly c: JobServiceComponents
  private readonly log: Log
  /** The last summary of each job, with the digest of its registers then. */
  /** When this daemon first saw each job in a terminal state (monotonic ms). */
  private readonly terminalSince = new Map<string, number>()
  /** Jobs of each tenant accepted here and not yet written (they count against its quota). */
  private readonly accepting = new Map<string, number>()
  /** Measured seconds per item of each task, from every daemon's results (for sizing). */
  private readonly taskSpeed = new Map<string, { secondsPerItem: number; samples: number }>()

  constructor(config: EngineConfig, components: JobServiceComponents) {
    this.cfg = config
    this.c = components
    this.log = components.logger
    components.replica.onChange((changed) => this.measure(changed))
  }

  /**
   * Check a job spec against this daemon's tasks and limits and resolve it (its fragment size
   * chosen here when it has none). Throws a ShoalError naming the field.
   */
  resolve(input: JobSpecInput): ResolvedSpec {
    const { mesh } = this.c
    const cfg = this.cfg
    if (input.command !== undefined && !cfg.allowAdHocCommands) {
      throw new ShoalError(
        'AD_HOC_NOT_ALLOWED',
        'command: ad-hoc commands are off on this daemon (allowAdHocCommands); name a configured task'
      )
    }
    const task = input.command !== undefined ? { command: input.command } : cfg.tasks[input.task]
    if (task === undefined) {
      throw new ShoalError(
        'TASK_NOT_ALLOWED',
        `task: "${input.task}" is not a task of this daemon (known: ${Object.keys(cfg.tasks).sort().join(', ')})`
      )
    }
    if ((input.items === undefined) === (input.range === undefined)) {
      throw new ShoalError('INVALID_SPEC', 'items/range: give exactly one of "items" or "range"')
    }
    if (input.range !== undefined && input.range.end <= input.range.start) {
      throw new ShoalError('INVALID_SPEC', 'range.end: must be greater than range.start')
    }
    const itemCount = itemCountOf(input)
    const timeoutSeconds = input.timeoutSeconds ?? task.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS
    const measured = this.taskSpeed.get(input.task)
    const fragmentSize =
      input.fragmentSize ??
      chooseFragmentSize({
        items: itemCount,
        timeoutSeconds,
        slots: mesh.claimers().reduce((n, p) => n + p.capacity, 0),
        ...(task.fragmentSize !== undefined ? { hint: task.fragmentSize } : {}),
        ...(measured !== undefined ? measured : {})
      })
    const spec = resolveSpec({ ...input, fragmentSize }, { timeoutSeconds: task.timeoutSeconds })
    if (spec.itemCount > cfg.maxItemsPerJob) {
      throw new ShoalError(
        'INVALID_SPEC',
        `items: ${spec.itemCount} items is more than the limit of ${cfg.maxItemsPerJob}`
      )
    }
    if (spec.fragmentCount > cfg.maxFragmentsPerJob) {
      throw new ShoalError(
        'INVALID_SPEC',
        `fragmentSize: ${spec.fragmentCount} fragments is more than the limit of ${cfg.maxFragmentsPerJob}`
      )
    }
    return spec
  }

  /**
   * Accept a job: validate against this daemon's tasks, resolve, store (synced), announce,
   * replicate. A schedule's job names its origin; its id comes from its idempotency key.
   */
  async submit(input: JobSpecInput, tenant = 'default', origin?: JobOrigin): Promise<SubmitAnswer> {
    const { replica, mesh } = this.c
    if (origin === undefined && input.idempotencyKey?.startsWith(SCHEDULE_KEY_PREFIX) === true) {
      throw new ShoalError(
        'INVALID_SPEC',
        `idempotencyKey: keys starting "${SCHEDULE_KEY_PREFIX}" are the jobs of schedule ticks; choose another`
      )
    }
    const spec = this.resolve(input)
    const failure = replica.failure
    if (failure !== undefined) throw refused(failure, 'the job was not accepted')
    const specHash = specHashOf(spec)
    const id =
      spec.idempotencyKey !== undefined ? idempotentJobId(tenant, spec.idempotencyKey) : this.c.newId()
    const existing = replica.state.jobs.get(id)
    if (existing?.deleted !== undefined) {
      // Its tombstone would absorb a new job under the same id: the key is spent.
      throw new ShoalError(
        'JOB_DELETED',
        `idempotencyKey: job ${id} made under "${spec.idempotencyKey}" was deleted; submit under another key`
      )
    }
    if (existing !== undefined) {
      if (existing.specHash !== specHash) {
        throw new ShoalError(
          'IDEMPOTENCY_CONFLICT',
          `idempotencyKey: "${spec.idempotencyKey}" was used for job ${id} with a different spec`
        )
      }
      return { ...this.summary(existing), replicas: 1, existing: true }
    }
    this.withinQuota(tenant, spec.itemCount)
    // Counted against the tenant's quota from now, not only once written: submits that come at
    // once are not all let in by the same count.
    this.accepting.set(tenant, (this.accepting.get(tenant) ?? 0) + 1)
    const job: JobRegister = {
      id,
      tenant,
      spec,
      specHash,
      createdAt: this.c.clock.wallNow(),
      cancelled: false,
      acceptedBy: mesh.peerId,
      ...(origin !== undefined ? { schedule: origin.schedule, scheduledFor: origin.scheduledFor } : {})
    }
    const entry: Entry = { kind: 'job', id, value: job }
    // Written to disk before anyone can see it: a job refused for want of disk leaves no trace.
    const changed = await replica
      .applyDurably([entry])
      .catch((err: unknown) => {
        throw refused(err, 'the job was not accepted')
      })
      .finally(() => this.accepting.set(tenant, (this.accepting.get(tenant) ?? 1) - 1))
    mesh.announce(changed)
    const replicas = 1 + (await this.replicate(id, [entry]))
    this.c.onAccepted?.()
    this.log.info({ job: id, task: spec.task, fragments: spec.fragmentCount, replicas }, 'job accepted')
    return { ...this.summary(replica.state.jobs.get(id) ?? job), replicas, existing: false }
  }

  /**
   * A tenant's limits at submit (its `tenants` entry): most items in one job, most jobs not yet
   * finished. Past either: 429 QUOTA_EXCEEDED, and nothing is stored. The count of unfinished
   * jobs is this daemon's view: two daemons accepting at the same moment may each let one more in.
   */
  private withinQuota(tenant: string, items: number): void {
    const limits = this.cfg.tenants[tenant]
    if (limits === undefined) return
    this.withinItemQuota(tenant, items)
    const most = limits.maxActiveJobs
    if (most === undefined) return
    const state = this.c.replica.state
    let active = this.accepting.get(tenant) ?? 0
    if (active >= most) {
      throw new ShoalError(
        'QUOTA_EXCEEDED',
        `tenant ${tenant} has ${most} jobs not yet finished, its maxActiveJobs; submit again once one has ended`
      )
    }
    for (const j of state.jobs.values()) {
      if (j.tenant !== tenant || j.finished !== undefined) continue
      if (!isTerminalJobState(jobViewOf(j, state.leaves(j.id)).state) && ++active >= most) {
        throw new ShoalError(
          'QUOTA_EXCEEDED',
          `tenant ${tenant} has ${most} jobs not yet finished, its maxActiveJobs; submit again once one has ended`
        )
      }
    }
  }

  /**
   * A tenant's most items in one job (its `maxItemsPerJob`): past it, 429 QUOTA_EXCEEDED. Also
   * asked of a schedule's template when the schedule is created: every tick would be refused.
   */
  withinItemQuota(tenant: string, items: number): void {
    const most = this.cfg.tenants[tenant]?.maxItemsPerJob
    if (most !== undefined && items > most) {
      throw new ShoalError(
        'QUOTA_EXCEEDED',
        `items: ${items} items is more than tenant ${tenant}'s maxItemsPerJob (${most})`
      )
    }
  }

  /** Alive peers (not self) ranked by rendezvous on a job id: where its extra copies live. */
  private replicaPeers(jobId: string): string[] {
    const peers: Array<{ id: string; capacity: number }> = []
    for (const { record, state } of this.c.mesh.membership.entries())
      if (state === 'alive' && !record.leaving) peers.push({ id: record.peerId, capacity: 1 })
    return rankPeers(jobId, peers).map((p) => p.id)
  }

  /**
   * Push a new job to the next ackReplicas - 1 live peers by rendezvous on its id and wait for
   * their synced acks, up to ackTimeoutMs; a peer that fails is replaced by the next in rank.
   * Resolves with the number of peers that acknowledged.
   */
  private async replicate(jobId: string, entries: Entry[]): Promise<number> {
    const want = this.cfg.ackReplicas - 1
    if (want <= 0) return 0
    const { mesh, clock } = this.c
    const candidates = this.replicaPeers(jobId)
    const deadline = clock.now() + this.cfg.ackTimeoutMs
    let acked = 0
    while (acked < want && candidates.length > 0) {
      const left = Math.floor(deadline - clock.now())
      if (left <= 0) break
      const batch = candidates.splice(0, want - acked)
      const results = await Promise.allSettled(batch.map((p) => mesh.push(p, entries, left)))
      for (const [i, r] of results.entries()) {
        if (r.status === 'fulfilled') acked++
        else this.log.debug({ peer: batch[i], err: String(r.reason) }, 'replica push failed')
      }
    }
    return acked
  }

  /** A job's summary, from its leaf index: no walk of its fragments, however large the job. */
  private summary(job: JobRegister): JobSummary {
    const view = jobViewOf(job, this.c.replica.state.leaves(job.id))
    const s: JobSummary = {
      id: job.id,
      tenant: job.tenant,
      state: view.state,
      task: job.spec.task,
      fragments: job.spec.fragmentCount,
      items: job.spec.itemCount,
      fragmentSize: job.spec.fragmentSize,
      priority: job.spec.priority,
      statusSummary: view.statusSummary,
      createdAt: new Date(job.createdAt).toISOString(),
      startedAt: iso(view.startedAt),
      finishedAt: iso(view.finishedAt),
      acceptedBy: job.acceptedBy
    }
    if (job.spec.name !== undefined) s.name = job.spec.name
    if (job.spec.labels !== undefined) s.labels = job.spec.labels
    if (job.conflicts !== undefined) s.conflicts = job.conflicts
    if (job.schedule !== undefined && job.scheduledFor !== undefined) {
      s.schedule = job.schedule
      s.scheduledFor = new Date(job.scheduledFor).toISOString()
    }
    s.compacted = job.finished !== undefined
    return s
  }

  /** Job summaries, newest first, optionally of one state and of one schedule's jobs. */
  listJobs(state?: JobState, filter: { schedule?: string; viewer?: Viewer } = {}): JobSummary[] {
    const { viewer, schedule } = filter
    const out = [...this.c.replica.state.jobs.values()]
      .filter((j) => j.deleted === undefined)
      .filter((j) => viewer === undefined || sees(viewer, j))
      .filter(
        (j) =>
          schedule === undefined ||
          (j.schedule === schedule && (viewer === undefined || j.tenant === viewer.tenant))
      )
      .sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1))
      .map((j) => this.summary(j))
    return state === undefined ? out : out.filter((j) => j.state === state)
  }

  async job(id: string, viewer?: Viewer): Promise<JobSummary> {
    return this.summary(await this.jobRegister(id, viewer))
  }

  async jobEvent(id: string, viewer?: Viewer): Promise<{ job: JobSummary; order: number }> {
    const job = await this.jobRegister(id, viewer)
    // The job register's part merges upward too: retries and cancelledRetries by max, cancelled
    // by OR; compaction is the end of the job's story.
    const order =
      job.finished !== undefined
        ? Number.MAX_SAFE_INTEGER
        : (this.c.replica.state.leaves(id)?.order ?? 0) +
          (job.retries ?? 0) +
          (job.cancelledRetries ?? 0) +
          (job.cancelled ? 1 : 0)
    return { job: this.summary(job), order }
  }

  /** The job's task metrics over every daemon: one record per (task, name, labels). */
  async metrics(id: string, viewer?: Viewer): Promise<JobMetrics> {
    await this.jobRegister(id, viewer)
    return this.c.metrics.jobMetrics(id)
  }

  /**
   * A job's register. Before answering 404, ask the peers that would hold its replicas: a job
   * accepted elsewhere a moment ago may not have reached this daemon yet. A deleted job answers
   * 410 JOB_DELETED (while its tombstone lives) to those who may see it, unless `deleted` is
   * allowed (a delete again).
   */
  private async jobRegister(id: string, viewer?: Viewer, allowDeleted = false): Promise<JobRegister> {
    const state = this.c.replica.state
    let job = state.jobs.get(id)
    if (job === undefined) {
      await this.pullFromReplicas(id)
      job = state.jobs.get(id)
    }
    // Another tenant's job is, to this viewer, a job that does not exist.
    if (job === undefined || (viewer !== undefined && !sees(viewer, job)))
      throw new ShoalError('JOB_NOT_FOUND', `job ${id} is not known to this daemon or its peers`)
    if (job.deleted !== undefined && !allowDeleted)
      throw new ShoalError(
        'JOB_DELETED',
        `job ${id} was deleted at ${new Date(job.deleted).toISOString()}: its fragments and output are gone`
      )
    return job
  }

  /** Pull a job's registers from the peers that would hold its replicas (up to 1 s each). */
  private async pullFromReplicas(id: string): Promise<void> {
    const ask = this.replicaPeers(id).slice(0, Math.max(this.cfg.ackReplicas, 2))
    await Promise.allSettled(ask.map((p) => this.c.mesh.pullJobs(p, [id], 1000)))
  }

  /** Leaf fragments in order, with who runs or ran them. */
  async fragments(id: string, viewer?: Viewer): Promise<FragmentRecord[]> {
    const job = await this.jobRegister(id, viewer)
    if (job.finished !== undefined) return [] // compacted: the summary stands for them
    const frags = this.c.replica.state.fragmentsOf(id)
    const leaves = leafFragments(job.spec, frags)
    const stopped = jobStopped(job, leaves)
    return leaves.map(([path, reg]) => {
      const v = fragmentView(path, reg, stopped)
      const [start, end] = itemInterval(job.spec, path)
      const tries: TryView[] = (reg?.claim?.tries ?? []).map((t) => ({
        round: t.generation ?? 0,
        attempt: t.attempt,
        peer: t.holder,
        exitCode: t.exitCode,
        reason: t.reason ?? null,
        startedAt: iso(t.startedAt ?? null),
        finishedAt: iso(t.finishedAt ?? null),
        durationMs:
          t.startedAt !== undefined && t.finishedAt !== undefined
            ? Math.max(0, t.finishedAt - t.startedAt)
            : null
      }))
      return {
        ...v,
        itemRange: { start, end },
        startedAt: iso(v.startedAt),
        finishedAt: iso(v.finishedAt),
        tries
      }
    })
  }

  /**
   * The stderr tail of one try of a fragment (the last one, or the last of attempt N): the tries
   * kept in the fragment's history, whichever daemon ran them.
   */
  async tryLog(id: string, path: string, attempt?: number, viewer?: Viewer): Promise<TryMeta & ByteStream> {
    const job = await this.jobRegister(id, viewer)
    if (job.finished !== undefined) throw compacted(id)
    const reg = this.c.replica.state.fragmentsOf(id).get(path)
    if (reg === undefined && this.c.replica.state.leaves(id)?.isLeaf(path) !== true)
      throw new ShoalError('FRAGMENT_NOT_FOUND', `fragment ${path} of job ${id} is not known`)
    const tries = reg?.claim?.tries ?? []
    const t = attempt === undefined ? tries.at(-1) : tries.findLast((x) => x.attempt === attempt)
    if (t === undefined) {
      const which = attempt === undefined ? 'no ended try' : `no ended try of attempt ${attempt}`
      const kept = tries.map((x) => x.attempt).join(', ') || 'none'
      throw new ShoalError(
        'TRY_NOT_FOUND',
        `fragment ${path} of job ${id} has ${which} (tries kept: ${kept})`
      )
    }
    const meta = { attempt: t.attempt, peer: t.holder, exitCode: t.exitCode, reason: t.reason ?? null }
    if (t.logBlob !== undefined) return { ...meta, ...this.stream([{ blob: t.logBlob, runner: t.holder }]) }
    return { ...meta, ...this.stream([t.log ?? '']) }
  }

  /**
   * The leaves that failed for good, in order, with the items they held, their exit code and
   * the tail of their stderr. With onFailure bisect these are single items: the bad ones.
   */
  async failures(id: string, viewer?: Viewer): Promise<FailureRecord[]> {
    const job = await this.jobRegister(id, viewer)
    if (job.finished !== undefined) throw compacted(id)
    const out: FailureRecord[] = []
    const frags = this.c.replica.state.fragmentsOf(id)
    for (const path of this.c.replica.state.leaves(id)?.failedLeaves() ?? []) {
      const claim = frags.get(path)?.claim
      if (claim?.phase !== 'FAILED') continue
      const [start, end] = itemInterval(job.spec, path)
      out.push({
        path,
        itemRange: { start, end },
        attempt: claim.attempt,
        reason: claim.reason ?? null,
        exitCode: claim.outcome?.exitCode ?? null,
        peer: claim.holder,
        log: claim.outcome?.log ?? ''
      })
    }
    return out
  }

  /**
   * Run the failed and cancelled fragments of a job again, each with a fresh attempt budget: a
   * synced write that raises the job's retry count (lifting a cancel) and gives every leaf that
   * failed for good a RUNNABLE claim of the next generation (which beats its FAILED result on
   * every replica), announced and pushed like a cancel.
   */
  async retry(id: string, viewer?: Viewer): Promise<JobSummary> {
    const job = await this.jobRegister(id, viewer)
    if (job.finished !== undefined) throw compacted(id)
    // A job that had ended becomes active again: within the tenant's quota, like a new one.
    const state = this.c.replica.state
    if (isTerminalJobState(jobViewOf(job, state.leaves(id)).state)) this.withinQuota(job.tenant, 0)
    const replica = this.c.replica
    const failedLeaves = () =>
      leafFragments(job.spec, replica.state.fragmentsOf(id)).filter(
        ([, reg]) => reg?.claim?.phase === 'FAILED'
      )
    let failed = failedLeaves()
    const cancelled = isCancelled(job)
    if (failed.length === 0 && !cancelled) {
      // The failure may not have reached this daemon yet: ask the job's replica peers first.
      await this.pullFromReplicas(id)
      failed = failedLeaves()
    }
    if (failed.length === 0 && !cancelled)
      throw new ShoalError('NOTHING_TO_RETRY', `job ${id} has no failed or cancelled fragment to run again`)
    const { mesh } = this.c
    const retries = (job.retries ?? 0) + 1
    const entries: Entry[] = [{ kind: 'job', id, value: { ...job, retries } }]
    for (const [path, reg] of failed) {
      const top = Math.max(reg?.top ?? 0, reg?.claim?.epoch ?? 0) + 1
      const fresh: Claim = {
        epoch: top,
        holder: mesh.peerId,
        incarnation: 0,
        seq: 1,
        attempt: 1,
        phase: 'RUNNABLE',
        hostLost: 0,
        // Above any round this replica saw, and at least the retry count: a retry served by a
        // replica that missed an earlier round's claims still starts a newer round.
        generation: Math.max((reg?.claim?.generation ?? 0) + 1, retries)
      }
      if (reg?.claim?.tries !== undefined) fresh.tries = reg.claim.tries
      entries.push({ kind: 'frag', job: id, specHash: job.specHash, path, value: { top, claim: fresh } })
    }
    const changed = await replica.applyDurably(entries).catch((err: unknown) => {
      throw refused(err, 'the job was not retried')
    })
    mesh.announce(changed)
    await this.replicate(id, changed.length > 0 ? changed : entries)
    this.log.info({ job: id, fragments: failed.length, retries, wasCancelled: cancelled }, 'job retried')
    return this.summary(replica.state.jobs.get(id) ?? job)
  }

  /**
   * Cancel a job: a synced write of `cancelled` (it merges by OR, so it reaches daemons that
   * were offline through anti-entropy), announced and pushed like a new job. Every daemon kills
   * the job's running fragments when it learns; none starts again. Cancelling a cancelled job
   * is a no-op; a finished job cannot be cancelled.
   */
  async cancel(id: string, viewer?: Viewer): Promise<JobSummary> {
    const job = await this.jobRegister(id, viewer)
    const now = this.summary(job)
    if (now.state === 'SUCCEEDED' || now.state === 'FAILED') {
      throw new ShoalError('JOB_FINISHED', `job ${id} already ${now.state}; nothing to cancel`)
    }
    const replica = this.c.replica
    if (!isCancelled(job)) {
      const entry: Entry = {
        kind: 'job',
        id,
        value: { ...job, cancelled: true, cancelledRetries: job.retries ?? 0 }
      }
      const changed = await replica.applyDurably([entry]).catch((err: unknown) => {
        throw refused(err, 'the job was not cancelled')
      })
      this.c.mesh.announce(changed)
      await this.replicate(id, changed.length > 0 ? changed : [entry])
      this.log.info({ job: id }, 'job cancelled')
    }
    return this.summary(replica.state.jobs.get(id) ?? job)
  }

  /**
   * Delete a finished job: a synced write of its register with `deleted` and a summary (its
   * compaction summary if it has one, else one written now, without output), announced and
   * pushed like a cancel. The summary absorbs the job's fragment registers on every daemon
   * that learns of it, at once or through anti-entropy, and keeps absorbing any that arrive
   * later, from anyone; the job leaves every list; its blobs, referenced by nothing, are
   * collected. Only a job in a terminal state: a running one must be cancelled first.
   */
  async delete(id: string, viewer?: Viewer): Promise<JobSummary> {
    const job = await this.jobRegister(id, viewer, true)
    const was = this.summary(job)
    if (job.deleted !== undefined) return was
    const { replica, clock } = this.c
    const leaves = replica.state.leaves(id)
    const view = jobViewOf(job, leaves)
    if (!isTerminalJobState(view.state)) {
      throw new ShoalError(
        'JOB_NOT_FINISHED',
        `job ${id} is ${view.state}: only a finished job (SUCCEEDED, FAILED, CANCELLED) can be deleted; cancel it first`
      )
    }
    const finished = job.finished ?? summaryOf(view, leaves?.leafCount ?? 0, clock.wallNow())
    const entry: Entry = { kind: 'job', id, value: { ...job, finished, deleted: clock.wallNow() } }
    const changed = await replica.applyDurably([entry]).catch((err: unknown) => {
      throw refused(err, 'the job was not deleted')
    })
    this.c.mesh.announce(changed)
    await this.replicate(id, changed.length > 0 ? changed : [entry])
    this.terminalSince.delete(id)
    this.log.info({ job: id, state: view.state }, 'job deleted')
    return was
  }

  onJobChange(listener: (jobId: string) => void): () => void {
    return this.c.replica.onChange((changed) => {
      const ids = new Set(changed.filter((e) => e.kind !== 'sched').map(entryJob))
      for (const id of ids) listener(id)
    })
  }

  async output(id: string, viewer?: Viewer): Promise<ByteStream & { complete: boolean }> {
    const { parts, complete } = await this.outputParts(id, viewer)
    await this.mustBeServable(parts, `the output of job ${id}`)
    return { ...this.stream(parts), complete }
  }

  /**
   * Fail (503 BLOB_UNAVAILABLE) before an answer starts when a blob of it is held by no live
   * daemon, rather than answer 200 and break off where that blob should come.
   */
  private async mustBeServable(parts: ReadonlyArray<string | BlobUse>, what: string): Promise<void> {
    const blobs = parts.filter((p): p is BlobUse => typeof p !== 'string')
    if (blobs.length === 0) return
    const missing = await this.c.outputs.unavailable(blobs)
    const first = missing[0]
    if (first === undefined) return
    const more = missing.length > 1 ? ` and ${missing.length - 1} more` : ''
    throw new ShoalError(
      'BLOB_UNAVAILABLE',
      `${what} cannot be served: no live daemon holds blob ${first.blob.sha256}${first.runner !== undefined ? ` (made by ${first.runner})` : ''}${more}`
    )
  }

  /** The output of a job as parts (inline text, or blobs with the daemon that made them). */
  private async outputParts(
    id: string,
    viewer?: Viewer
  ): Promise<{ parts: Array<string | BlobUse>; complete: boolean }> {
    const job = await this.jobRegister(id, viewer)
    if (job.finished !== undefined) {
      if (job.finished.output === undefined) {
        throw new ShoalError(
          'OUTPUT_GONE',
          `job ${id} was compacted and its output dropped (compactedOutput)`
        )
      }
      return {
        parts: job.finished.output.map((p) => (typeof p === 'string' ? p : { blob: p })),
        complete: job.finished.state === 'SUCCEEDED'
      }
    }
    const frags = this.c.replica.state.fragmentsOf(id)
    const parts: Array<string | BlobUse> = []
    let complete = true
    for (const [, reg] of leafFragments(job.spec, frags)) {
      const claim = reg?.claim
      if (claim?.phase !== 'SUCCEEDED') {
        complete = false
        continue
      }
      const blob = outputBlob(claim)
      parts.push(blob !== undefined ? { blob, runner: claim.holder } : (claim.outcome?.output ?? ''))
    }
    return { parts, complete }
  }

  /** Parts as one stream of bytes: inline text as is, blobs from here or their holders. */
  private stream(parts: ReadonlyArray<string | BlobUse>): ByteStream {
    const outputs = this.c.outputs
    const bytes = parts.reduce((n, p) => n + (typeof p === 'string' ? Buffer.byteLength(p) : p.blob.bytes), 0)
    async function* stream(): AsyncIterable<Uint8Array> {
      for (const p of parts) {
        if (typeof p !== 'string') yield* outputs.read(p)
        else if (p !== '') yield Buffer.from(p)
      }
    }
    return { bytes, stream: stream() }
  }

  /**
   * Compaction (DESIGN "Persistence"): retainFinishedMs after this daemon first saw a job end,
   * it writes the job's summary, which absorbs every fragment register of the job; any daemon
   * may do it, and concurrent summaries merge. Summaries older than tombstoneDays are dropped.
   */
  async compact(): Promise<void> {
    const { replica, clock } = this.c
    const cfg = this.cfg
    const mono = clock.now()
    const writes: Entry[] = []
    for (const job of replica.state.jobs.values()) {
      if (job.finished !== undefined) {
        // A delete after compaction restarts the tombstone's life: it must outlive the delete.
        const since = Math.max(job.finished.compactedAt, job.deleted ?? 0)
        if (clock.wallNow() - since > cfg.tombstoneDays * 86_400_000) await replica.dropJob(job.id)
        continue
      }
      const leaves = replica.state.leaves(job.id)
      const view = jobViewOf(job, leaves)
      if (!isTerminalJobState(view.state) || view.statusSummary.RUNNING > 0) {
        this.terminalSince.delete(job.id)
        continue
      }
      const since = this.terminalSince.get(job.id)
      if (since === undefined) {
        this.terminalSince.set(job.id, mono)
        continue
      }
      if (mono - since < cfg.retainFinishedMs) continue
      const finished = summaryOf(view, leaves?.leafCount ?? 0, clock.wallNow())
      if (cfg.compactedOutput === 'keep') {
        // Blobs are kept by reference; inline text up to 1 MiB in all.
        const { parts } = await this.outputParts(job.id)
        const kept: OutputPart[] = parts.map((p) => (typeof p === 'string' ? p : p.blob))
        const inline = kept.reduce((n, p) => n + (typeof p === 'string' ? p.length : 0), 0)
        if (inline <= 1024 * 1024) finished.output = kept
      }
      writes.push({ kind: 'job', id: job.id, value: { ...job, finished } })
      this.terminalSince.delete(job.id)
    }
    if (writes.length === 0) return
    const changed = await replica.apply(writes, 'local', { sync: true })
    this.c.mesh.announce(changed)
    this.log.info({ jobs: changed.length }, 'compacted finished jobs')
  }

  /** Learn each task's time per item from succeeded fragments (wall times of one holder). */
  private measure(changed: readonly Entry[]): void {
    const state = this.c.replica.state
    for (const e of changed) {
      if (e.kind !== 'frag') continue
      const c = e.value.claim
      if (c?.phase !== 'SUCCEEDED' || c.startedAt === undefined || c.finishedAt === undefined) continue
      const job = state.jobs.get(e.job)
      if (job === undefined || job.specHash !== e.specHash) continue
      let items: number
      try {
        const [lo, hi] = itemInterval(job.spec, e.path)
        items = hi - lo
      } catch {
        continue
      }
      if (items <= 0) continue
      const sample = Math.max(0, c.finishedAt - c.startedAt) / 1000 / items
      const prev = this.taskSpeed.get(job.spec.task)
      this.taskSpeed.set(job.spec.task, {
        secondsPerItem: updateSecondsPerItem(prev?.secondsPerItem, sample),
        samples: (prev?.samples ?? 0) + 1
      })
    }
  }
}

/** The summary of a job that ended (view.state terminal), without output. */
function summaryOf(view: ReturnType<typeof jobViewOf>, fragments: number, now: number): FinishedSummary {
  return {
    state: view.state as FinishedSummary['state'],
    statusSummary: view.statusSummary,
    fragments,
    startedAt: view.startedAt,
    finishedAt: view.finishedAt,
    compactedAt: now
  }
}

/** What asking for a compacted job's fragments answers. */
function compacted(id: string): ShoalError {
  return new ShoalError(
    'JOB_COMPACTED',
    `job ${id} was compacted: its fragments, their tries and logs are gone (submit it again, under a new idempotencyKey if it had one)`
  )
}

/** May this viewer see the job: its own tenant's, or any with admin rights. */
function sees(viewer: Viewer, job: JobRegister): boolean {
  return viewer.admin || job.tenant === viewer.tenant
}

/** A write refused for want of a working disk, as the API tells it (507 or 503, one line). */
export function refused(err: unknown, what: string): unknown {
  if (!(err instanceof ShoalError) || (err.code !== 'STORAGE_FULL' && err.code !== 'STORAGE_FAILED'))
    return err
  return new ShoalError(
    err.code,
    `storage: ${err.message}; ${what} (retry once the disk recovers, or use another daemon)`,
    { cause: err }
  )
}
