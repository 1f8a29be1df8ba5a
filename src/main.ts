#!/usr/bin/env node
/**
 * The `shoal` command: `shoal daemon` runs a daemon; every other command is an HTTP client of
 * one (cli/). Exit codes: 0 ok, 1 job failed (with --wait), 2 usage or config, 3 unreachable.
 */
import { Command, CommanderError, Option } from 'commander'
import { ApiError, CliError, EXIT, registerClientCommands } from './cli/index.ts'
import { ShoalError } from './core/errors.ts'
import type { ConfigFlags } from './daemon/config.ts'
import { VERSION } from './daemon/version.ts'

// The daemon's code (libp2p, fastify, LevelDB) is loaded only by the commands that need it, so
// client commands start in a fraction of the time.

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value]
const numberish = (v: string): number | string =>
  v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v

let exitCode: number = EXIT.OK

const program = new Command()
  .name('shoal')
  .description('Shoal: a masterless peer-to-peer batch-job mesh')
  .version(VERSION)
  .addOption(new Option('--api <url>', 'daemon API URL for client commands (env SHOAL_API)'))
  .addOption(new Option('--token <token>', 'API bearer token for client commands (env SHOAL_TOKEN)'))
  .exitOverride()
  // One line, like every other error: commander puts its "(Did you mean …?)" on a line of its own.
  .configureOutput({
    outputError: (str, write) =>
      write(
        `shoal: ${str
          .replace(/^error: /, '')
          .trim()
          .replace(/\s*\n\s*/g, ' ')}\n`
      )
  })

program
  .command('daemon')
  .description('run a daemon')
  .option('--config <file>', 'config file (JSON)')
  .option('--data-dir <dir>', 'data directory (identity, state, peers)')
  .option('--listen <multiaddr>', 'p2p listen address (repeatable)', collect)
  .option(
    '--advertise-api <url>',
    'API URL told to peers (default: the bound address, or a reachable one for 0.0.0.0)'
  )
  .option('--bootstrap <multiaddr>', 'daemon to join through, with /p2p/<id> (repeatable)', collect)
  .option('--name <name>', 'a name for people')
  .option('--capacity <n>', 'fragments run at once', numberish)
  .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
  .option('--swarm-key <file>', 'pre-shared swarm key of a private mesh (shoal keygen --swarm)')
  .option(
    '--api-token <token>',
    'API bearer token (repeatable); every route but /v1/health needs one',
    collect
  )
  .option('--insecure', 'allow listening beyond loopback without a swarm key or API tokens')
  .option(
    '--reset-state',
    "start over with an empty state store when the data dir's is damaged or missing (it is kept aside); resyncs from peers"
  )
  .action(async (opts: Record<string, unknown>, cmd: Command) => {
    // --api means HOST:PORT for the daemon (a URL for clients): read it from the global options.
    const api = cmd.optsWithGlobals<{ api?: string }>().api
    const flags: ConfigFlags = { ...(opts as ConfigFlags), ...(api !== undefined ? { api } : {}) }
    const [{ runDaemon }, { ApiServer }] = await Promise.all([
      import('./daemon/run.ts'),
      import('./api/server.ts')
    ])
    exitCode = await runDaemon(flags, (daemon) => {
      const cfg = daemon.config
      return new ApiServer(daemon, {
        listen: cfg.api,
        bodyLimitBytes: cfg.bodyLimitBytes,
        limits: {
          maxConnections: cfg.httpMaxConnections,
          headersTimeoutMs: cfg.httpHeadersTimeoutMs,
          requestTimeoutMs: cfg.httpRequestTimeoutMs,
          keepAliveTimeoutMs: cfg.httpKeepAliveTimeoutMs
        },
        logger: daemon.log.child({ component: 'api' })
      })
    })
    // A stop with errors may have left a component half torn down (libp2p stops its services
    // in parallel and gives up at the first that fails, say a peer store the full disk refuses:
    // gossipsub's timers then run on). The daemon is stopped: exit, whatever is left.
    if (exitCode !== 0) process.exit(exitCode)
  })

program
  .command('keygen')
  .description('print a new secret: --swarm for a private mesh key')
  .option('--swarm', 'a pre-shared swarm key (the format @libp2p/pnet reads)')
  .action(async (opts: { swarm?: boolean }) => {
    if (opts.swarm !== true) throw new CliError(EXIT.USAGE, 'keygen: say what to generate: --swarm')
    const { newSwarmKey } = await import('./daemon/swarm-key.ts')
    process.stdout.write(newSwarmKey())
  })

registerClientCommands(
  program,
  (code) => {
    exitCode = code
  },
  VERSION
)

try {
  await program.parseAsync(process.argv)
  process.exitCode = exitCode
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : EXIT.USAGE
  } else if (err instanceof CliError || err instanceof ApiError) {
    // An API error: the daemon unreachable or failing (5xx) is 3, a refused request (4xx) is 2.
    process.stderr.write(`shoal: ${err.message}\n`)
    process.exitCode =
      err instanceof CliError ? err.exitCode : err.unreachable ? EXIT.UNREACHABLE : EXIT.USAGE
  } else if (err instanceof ShoalError && err.code === 'CONFIG_INVALID') {
    process.stderr.write(`shoal: config error: ${err.message}\n`)
    process.exitCode = EXIT.USAGE
  } else if (err instanceof ShoalError && err.code === 'STARTUP_FAILED') {
    // An operator error found while starting (a port in use, a data dir we cannot write): one line.
    process.stderr.write(`shoal: cannot start: ${err.message}\n`)
    process.exitCode = EXIT.USAGE
  } else {
    process.stderr.write(`shoal: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
  }
}
