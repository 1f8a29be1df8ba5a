import pino, { type Logger } from 'pino'

/**
 * The root logger: JSON lines on stdout (one per event), pretty only when stdout is a terminal
 * and SHOAL_LOG_FORMAT is not "json". Components log through children ({ component }).
 */
export function createLogger(level: string, name: string): Logger {
  const pretty = process.stdout.isTTY === true && process.env.SHOAL_LOG_FORMAT !== 'json'
  return pino({
    level,
    base: { name, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true } } } : {})
  })
}
