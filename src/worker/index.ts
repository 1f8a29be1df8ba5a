export { CommandExecutor, type CommandResult, type CommandRun } from './command.ts'
