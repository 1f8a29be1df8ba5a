export { CliError, Client, EXIT } from './client.ts'
export { registerClientCommands } from './commands.ts'
