export { CommandExecutor } from './command.ts'
