import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  type ContainmentFacts,
  type ContainmentKind,
  type ContainmentPlan,
  chooseContainment,
  ownDir,
  parentCgroupName,
  parseMountinfo,
  parseProcCgroup
} from './containment.ts'

/** How long a kill may take to empty a cgroup before we give up on it (left for the reaper). */
const KILL_BOUND_MS = 5000

/**
 * The cgroups of one run, one per hierarchy in use. Every operation is best effort and never
 * throws except `enter`, whose failure means the task must not run.
 */
export class RunCgroup {
  readonly name: string
  private readonly v2: string | undefined
  private readonly freezer: string | undefined
  private readonly pids: string | undefined

  constructor(name: string, dirs: { v2?: string; freezer?: string; pids?: string }) {
    this.name = name
    this.v2 = dirs.v2
    this.freezer = dirs.freezer
    this.pids = dirs.pids
  }

  /** Every directory of the run. */
  get dirs(): string[] {
    return [this.v2, this.freezer, this.pids].filter((d): d is string => d !== undefined)
  }

  /** The directory whose cgroup.procs lists every process of the run. */
  private get members(): string {
    return (this.v2 ?? this.freezer ?? this.pids) as string
  }

  /** Move a process into every cgroup of the run (before it may fork). */
  enter(pid: number): void {
    for (const d of this.dirs) writeFileSync(join(d, 'cgroup.procs'), String(pid))
  }

  /** The processes of the run now. */
  processes(): number[] {
    try {
      return readFileSync(join(this.members, 'cgroup.procs'), 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map(Number)
    } catch {
      return []
    }
  }

  /** Send a signal to every process of the run (including any that left its process group). */
  signal(sig: NodeJS.Signals): void {
    for (const pid of this.processes()) signalPid(pid, sig)
  }

  /**
   * SIGKILL every process of the run, repeating until none is left (a forking task converges:
   * cgroup.kill is atomic in v2; in v1 the freezer stops forks while we kill, or pids.max=0 does).
   * Resolves true once the cgroup is empty, false if it did not empty within a bound.
   */
  async kill(): Promise<boolean> {
    const deadline = performance.now() + KILL_BOUND_MS
    let wait = 2
    for (;;) {
      if (this.v2 !== undefined) tryWrite(join(this.v2, 'cgroup.kill'), '1')
      else {
        if (this.pids !== undefined) tryWrite(join(this.pids, 'pids.max'), '0')
        if (this.freezer !== undefined) await this.freeze()
        for (const pid of this.processes()) signalPid(pid, 'SIGKILL')
        if (this.freezer !== undefined) tryWrite(join(this.freezer, 'freezer.state'), 'THAWED')
      }
      if (this.processes().length === 0) return true
      if (performance.now() > deadline) return false
      await sleep(wait)
      wait = Math.min(50, wait * 2)
    }
  }

  private async freeze(): Promise<void> {
    const state = join(this.freezer as string, 'freezer.state')
    tryWrite(state, 'FROZEN')
    for (let i = 0; i < 50; i++) {
      const s = tryRead(state)
      if (s === undefined || s.trim() === 'FROZEN') return
      await sleep(2)
    }
  }

  /** Remove the run's cgroups (they must be empty); true when all are gone. */
  async remove(): Promise<boolean> {
    let left = this.dirs
    for (let i = 0; i < 20 && left.length > 0; i++) {
      left = left.filter((d) => !tryRmdir(d))
      if (left.length > 0) await sleep(10)
    }
    return left.length === 0
  }
}

/**
 * The containment of a daemon's tasks: which kind, and (for cgroups) the parent directories of
 * its runs, named after its data dir. The parents exist only while runs do, so a daemon that
 * ends leaves nothing behind but what a crash interrupted (which the next start reaps).
 */
export class Containment {
  readonly plan: ContainmentPlan
  readonly facts: ContainmentFacts
  private active = 0

  constructor(plan: ContainmentPlan, facts: ContainmentFacts = { root: false }) {
    this.plan = plan
    this.facts = facts
  }

  get kind(): ContainmentKind {
    return this.plan.kind
  }

  /** Whether runs get a per-task process cap (pids.max). */
  get capsProcesses(): boolean {
    return this.plan.pids !== undefined
  }

  /** Probe what this host offers to a daemon with this data dir, and choose. Never throws. */
  static detect(dataDir: string): Containment {
    const facts = probe(parentCgroupName(sha256(resolve(dataDir))))
    return new Containment(chooseContainment(facts), facts)
  }

  private parentDirs(): { v2?: string; freezer?: string; pids?: string } {
    const p = this.plan
    const pids = p.pids?.version === 1 ? p.pids.dir : undefined
    return {
      ...(p.v2 !== undefined ? { v2: p.v2 } : {}),
      ...(p.v1Freezer !== undefined ? { freezer: p.v1Freezer } : {}),
      ...(pids !== undefined ? { pids } : {})
    }
  }

  /**
   * Make the cgroups of a new run, with its process cap. Undefined under process-group
   * containment. Throws (one line) when a cgroup cannot be made: the task must not run then.
   */
  create(name: string, maxProcesses: number): RunCgroup | undefined {
    if (this.plan.kind === 'process-group') return undefined
    const parents = this.parentDirs()
    // Synchronous on purpose: no other run's release can remove a parent in between.
    for (const d of Object.values(parents)) mkdirSync(d, { recursive: true })
    if (this.plan.pids?.version === 2)
      writeFileSync(join(this.plan.v2 as string, 'cgroup.subtree_control'), '+pids')
    const dirs = Object.fromEntries(Object.entries(parents).map(([k, d]) => [k, join(d, name)]))
    const run = new RunCgroup(name, dirs)
    this.active++
    try {
      for (const d of run.dirs) mkdirSync(d)
      if (this.plan.pids !== undefined) {
        const pidsDir = this.plan.pids.version === 2 ? (dirs.v2 as string) : (dirs.pids as string)
        writeFileSync(join(pidsDir, 'pids.max'), String(maxProcesses))
      }
    } catch (err) {
      void this.release(run)
      throw new Error(`cannot make the cgroup ${name}: ${(err as Error).message}`, { cause: err })
    }
    return run
  }

  /** Kill what is left of a run and remove its cgroups; the parents go with the last run. */
  async release(run: RunCgroup): Promise<boolean> {
    const empty = await run.kill()
    const removed = await run.remove()
    this.active--
    if (this.active === 0) for (const d of Object.values(this.parentDirs())) tryRmdir(d)
    return empty && removed
  }

  /**
   * Kill the processes in every run cgroup a previous life of this daemon (same data dir) left,
   * and remove those cgroups. Another daemon's cgroups have other parents and are never touched.
   * Returns the number of cgroups reaped.
   */
  async reap(): Promise<number> {
    if (this.plan.kind === 'process-group') return 0
    const parents = this.parentDirs()
    const names = new Set<string>()
    for (const d of Object.values(parents)) {
      try {
        for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) names.add(e.name)
      } catch {
        // no parent: nothing left behind
      }
    }
    for (const name of names) {
      const dirs = Object.fromEntries(
        Object.entries(parents)
          .map(([k, d]) => [k, join(d, name)] as const)
          .filter(([, d]) => existsSync(d))
      )
      const run = new RunCgroup(name, dirs)
      await run.kill()
      await run.remove()
    }
    if (this.active === 0) for (const d of Object.values(parents)) tryRmdir(d)
    return names.size
  }
}

/** Find, as root, the cgroup hierarchies where this daemon can make its own parent cgroup. */
function probe(parentName: string): ContainmentFacts {
  const root = process.getuid?.() === 0
  const facts: ContainmentFacts = { root }
  if (!root) return facts
  const mountinfo = tryRead('/proc/self/mountinfo')
  const own = parseProcCgroup(tryRead('/proc/self/cgroup') ?? '')
  if (mountinfo === undefined) return facts
  const mounts = parseMountinfo(mountinfo)
  const v2mount = mounts.find((m) => m.version === 2)
  const v2own = v2mount !== undefined ? ownDir(v2mount, own.v2) : undefined
  if (v2own !== undefined) {
    const dir = join(v2own, parentName)
    if (tryMkdir(dir)) {
      const kill = existsSync(join(dir, 'cgroup.kill'))
      // The pids controller only when it is already offered to us (delegated, or a v2-only
      // host's root); we never enable controllers in the daemon's own cgroup.
      const offered = (tryRead(join(dir, 'cgroup.controllers')) ?? '').split(/\s+/).includes('pids')
      const pids = offered && tryWrite(join(dir, 'cgroup.subtree_control'), '+pids')
      facts.v2 = { dir, kill, pids }
      tryRmdir(dir)
    }
  }
  for (const controller of ['pids', 'freezer'] as const) {
    const mount = mounts.find((m) => m.version === 1 && m.controllers.includes(controller))
    const base = mount !== undefined ? ownDir(mount, own.v1[controller]) : undefined
    if (base === undefined) continue
    const dir = join(base, parentName)
    if (!tryMkdir(dir)) continue
    const ok = existsSync(join(dir, controller === 'pids' ? 'pids.max' : 'freezer.state'))
    tryRmdir(dir)
    if (!ok) continue
    if (controller === 'pids') facts.v1Pids = dir
    else facts.v1Freezer = dir
  }
  return facts
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex')
}

function signalPid(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    // gone already
  }
}

function tryRead(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

function tryWrite(file: string, data: string): boolean {
  try {
    writeFileSync(file, data)
    return true
  } catch {
    return false
  }
}

function tryMkdir(dir: string): boolean {
  try {
    mkdirSync(dir, { recursive: true })
    return true
  } catch {
    return false
  }
}

function tryRmdir(dir: string): boolean {
  try {
    rmdirSync(dir)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT'
  }
}
