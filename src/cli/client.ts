/** Exit codes of the CLI (CONTRACT §5). */
export const EXIT = { OK: 0, JOB_FAILED: 1, USAGE: 2, UNREACHABLE: 3 } as const

/** An error that ends the CLI with a given exit code and one line on stderr. */
export class CliError extends Error {
  readonly exitCode: number

  constructor(exitCode: number, message: string) {
    super(message)
    this.exitCode = exitCode
  }
}

/** A small HTTP client of the daemon API. */
export class Client {
  readonly base: string
  private readonly token: string | undefined

  constructor(base: string, token?: string) {
    this.base = base.replace(/\/+$/, '')
    this.token = token === '' ? undefined : token
  }

  async request(method: string, path: string, body?: string): Promise<Response> {
    let res: Response
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: {
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...(this.token !== undefined ? { authorization: `Bearer ${this.token}` } : {})
        },
        body,
        signal: AbortSignal.timeout(30_000)
      })
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message
      throw new CliError(EXIT.UNREACHABLE, `cannot reach the daemon at ${this.base}: ${cause}`)
    }
    if (res.status >= 400) {
      const text = await res.text()
      let message = text
      try {
        const parsed = JSON.parse(text) as { error?: { code?: string; message?: string } }
        if (parsed.error?.message !== undefined) message = `${parsed.error.code}: ${parsed.error.message}`
      } catch {
        // not JSON: keep the text
      }
      throw new CliError(res.status >= 500 ? EXIT.UNREACHABLE : EXIT.USAGE, `${res.status} ${message}`)
    }
    return res
  }

  async json<T>(method: string, path: string, body?: string): Promise<T> {
    return (await (await this.request(method, path, body)).json()) as T
  }
}
