import pino, { type Logger } from 'pino'

/**
 * The root logger: JSON lines on stdout (one per event), pretty only when stdout is a terminal,
 * SHOAL_LOG_FORMAT is not "json", and pino-pretty is installed (else JSON lines there too).
 * Components log through children ({ component }).
 */
export function createLogger(level: string, name: string): Logger {
  const pretty =
    process.stdout.isTTY === true && process.env.SHOAL_LOG_FORMAT !== 'json' && installed('pino-pretty')
  return pino({
    level,
    base: { name, pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    ...(pretty ? { transport: { target: 'pino-pretty', options: { colorize: true } } } : {})
  })
}

function installed(pkg: string): boolean {
  try {
    import.meta.resolve(pkg)
    return true
  } catch {
    return false
  }
}
