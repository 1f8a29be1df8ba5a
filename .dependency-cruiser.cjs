// Layer rules (DESIGN "Layers", docs/decisions/011): imports point down only, and core/ stays pure.
const layers = ['core', 'store', 'mesh', 'worker', 'scheduler', 'engine', 'sim', 'daemon', 'api', 'cli']
const allowed = {
  core: [],
  store: ['core'],
  mesh: ['core', 'store'],
  worker: ['core'],
  scheduler: ['core', 'store'],
  engine: ['core', 'store', 'mesh', 'scheduler'],
  sim: ['core', 'store', 'mesh', 'engine'],
  daemon: ['core', 'store', 'mesh', 'worker', 'engine'],
  api: ['core', 'daemon'],
  cli: ['core']
}
/** Modules that do I/O or read real time: none may be reachable from the simulator or the engine. */
const IO =
  '(^(node:)?(fs|fs/promises|net|child_process|worker_threads|timers|timers/promises|http|https|dgram|os|perf_hooks)$|libp2p|^node_modules/(level|classic-level|abstract-level|fastify|pino|datastore-level)/)'
module.exports = {
  forbidden: [
    ...layers.map((layer) => ({
      name: `layer-${layer}`,
      severity: 'error',
      comment: `${layer}/ may import only: ${allowed[layer].join(', ') || 'nothing from other layers'}`,
      from: { path: `^src/${layer}/` },
      to: {
        path: `^src/(${layers.filter((l) => l !== layer && !allowed[layer].includes(l)).join('|')})/`
      }
    })),
    {
      name: 'core-is-pure',
      severity: 'error',
      comment: 'core/ does no I/O: no fs, net, child_process, timers or libp2p',
      from: { path: '^src/core/' },
      to: { path: IO }
    },
    {
      name: 'one-engine-no-io',
      severity: 'error',
      comment:
        'the engine and the simulator reach time, network, disk and processes only through injected ports: nothing they reach, directly or not, does I/O',
      from: { path: '^src/(engine|sim)/' },
      to: { path: IO, reachable: true }
    },
    {
      name: 'sim-is-a-harness',
      severity: 'error',
      comment:
        'protocol decisions live in the engine; the simulator reaches claims, leases, membership and the scheduler only through ShoalNode',
      from: { path: '^src/sim/' },
      to: { path: '^src/(core/(claim|hrw|outcome|liveness|sizing|membership)\\.ts|scheduler/|mesh/mesh\\.ts|store/replica\\.ts$)', dependencyTypesNot: ['type-only'] }
    },
    {
      name: 'client-starts-light',
      severity: 'error',
      comment:
        'client commands start fast: the CLI entry and cli/ load the daemon (libp2p, fastify, LevelDB, workers) only by a dynamic import (cli/ imports only core/, which does no I/O)',
      from: { path: '^src/(main\\.ts|cli/)' },
      to: {
        path: '^src/(api|engine|mesh|store|worker|scheduler|sim)/|^src/daemon/(?!version\\.ts|config\\.ts)|libp2p|^node_modules/(level|classic-level|fastify|piscina|prom-client)/',
        dependencyTypesNot: ['type-only', 'dynamic-import']
      }
    },
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' }
  }
}
