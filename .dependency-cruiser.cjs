// Layer rules (DESIGN "Layers"): imports point down only, and core/ stays pure.
const layers = ['core', 'sim', 'store', 'mesh', 'worker', 'scheduler', 'daemon', 'api', 'cli']
const allowed = {
  core: [],
  sim: ['core'],
  store: ['core'],
  mesh: ['core', 'store'],
  worker: ['core'],
  scheduler: ['core', 'store', 'mesh', 'worker'],
  daemon: ['core', 'store', 'mesh', 'worker', 'scheduler'],
  api: ['core', 'daemon'],
  cli: ['core']
}
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
      comment: 'core/ and sim/ do no I/O: no fs, net, child_process, timers or libp2p',
      from: { path: '^src/(core|sim)/' },
      to: { path: '(^node:(fs|net|child_process|worker_threads|timers|http|dgram|os)|libp2p|level|fastify|pino)' }
    },
    { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } }
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' }
  }
}
