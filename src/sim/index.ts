/**
 * The deterministic simulator (DESIGN "Simulation"). It drives the pure core (src/core) with
 * virtual daemons in one process, a seeded random source, a virtual clock, and a fake network:
 *
 * - random.ts: sfc32 seeded through splitmix32; every random choice of a run comes from it.
 * - clock.ts: the event queue, ordered by virtual time, then insertion sequence.
 * - network.ts: per-message drop, delay (hence reordering), duplication; partitions into sides.
 * - daemon.ts: one virtual daemon: a "disk" of synced registers plus an unsynced window a crash
 *   loses; an incarnation bumped at every start; heartbeats judged by `judge` on the daemon's own
 *   clock; the claim loop of scheduler.ts over `pickClaims`/`newClaim` with the lease rules of
 *   decision 004; runs recorded with `claimAfterTry`; gossip of deltas and digest-based pulls.
 * - simulation.ts: the run: daemons, client submissions (acknowledged only once synced on the
 *   accepting daemon and on one more, as ackReplicas = 2 wants), a fault phase (crashes, restarts,
 *   long absences, one permanent loss at most, pauses, graceful leaves, partitions, lossy links),
 *   healing, running until quiescent, and the invariant checks.
 * - invariants.ts: the checks (see there).
 *
 * Nothing here reads a real clock, uses Math.random or does I/O: the same options give the same
 * run, byte for byte, so every failing seed replays with the command in its result.
 */
export type { Violation, ViolationKind } from './invariants.ts'
export { Random } from './random.ts'
export {
  DEFAULTS,
  replayCommand,
  runSimulation,
  type SimBugs,
  type SimOptions,
  type SimResult,
  type SimStats
} from './simulation.ts'
