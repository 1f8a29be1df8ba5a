export { ApiError, CliError, EXIT, ShoalClient } from './client.ts'
export { registerClientCommands } from './commands.ts'
