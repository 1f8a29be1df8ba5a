/**
 * The deterministic simulator (DESIGN "Simulation", docs/decisions/011): a harness that runs the
 * daemon's own engine (ShoalNode: replica, mesh protocol, scheduler, job service) on many
 * virtual hosts in one process, with a seeded random source, a virtual clock and a fake network.
 * No protocol decision lives here.
 *
 * - random.ts: sfc32 seeded through splitmix32; every random choice of a run comes from it.
 * - clock.ts: the event queue, ordered by virtual time, then insertion sequence; after each
 *   event the run lets the engine's promise chains settle.
 * - network.ts: per-message drop, delay (hence reordering), duplication; partitions into sides.
 * - host.ts: one virtual host: a disk that survives crashes, and one ShoalNode per life over
 *   virtual ports (a clock on the host's skewed time that dies with the life and waits out
 *   pauses, a transport over the network, a store whose unsynced writes a crash loses, tasks
 *   drawn from the run's weather, with a fenced external resource).
 * - simulation.ts: the run: hosts, client submissions through the job service, a fault phase
 *   (crashes, restarts, long absences, one permanent loss at most, pauses, graceful leaves,
 *   partitions, lossy links), healing, running until quiescent, and the invariant checks; and
 *   the deliberate bugs, planted in the engine through its test-only seams.
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
