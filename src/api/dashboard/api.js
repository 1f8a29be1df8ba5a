// The dashboard's calls to the daemon that serves it: the same routes, answers and error lines as
// the typed client (src/cli/client.ts), from the browser. The token lives in sessionStorage (this
// tab only) and goes in the Authorization header of every call, never in a URL.

const TOKEN_KEY = 'shoal.token'

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) ?? '',
  set: (value) => {
    if (value === '') sessionStorage.removeItem(TOKEN_KEY)
    else sessionStorage.setItem(TOKEN_KEY, value)
  }
}

/** A call that did not succeed: `status` 0 when no answer came; the message is one line. */
export class ApiError extends Error {
  constructor(status, message, code) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
  }
}

function headers(body) {
  const h = {}
  if (body !== undefined) h['content-type'] = 'application/json'
  const t = token.get()
  if (t !== '') h.authorization = `Bearer ${t}`
  return h
}

/** One request; throws ApiError ("404 JOB_NOT_FOUND: job … is not known") unless it succeeds. */
export async function request(method, path, body, signal) {
  let res
  try {
    res = await fetch(path, { method, headers: headers(body), body, signal, cache: 'no-store' })
  } catch (err) {
    if (signal?.aborted) throw err
    throw new ApiError(0, `cannot reach the daemon: ${err.message}`)
  }
  if (res.status >= 400) {
    const text = await res.text()
    let error
    try {
      error = JSON.parse(text).error
    } catch {
      // not JSON: keep the text
    }
    const message =
      typeof error?.code === 'string'
        ? `${error.code}: ${error.message}`
        : text.split('\n')[0] || res.statusText
    throw new ApiError(res.status, `${res.status} ${message}`, error?.code)
  }
  return res
}

const json = async (method, path, body) => (await request(method, path, body)).json()
const jobPath = (id) => `/v1/jobs/${encodeURIComponent(id)}`
const peerPath = (peerId) => `/v1/peers/${encodeURIComponent(peerId)}`

export const api = {
  health: () => json('GET', '/v1/health'),
  peers: () => json('GET', '/v1/peers'),
  jobs: () => json('GET', '/v1/jobs'),
  job: (id) => json('GET', jobPath(id)),
  /** `spec`: the job spec's JSON text, sent as typed. */
  submit: (spec) => json('POST', '/v1/jobs', spec),
  fragments: (id) => json('GET', `${jobPath(id)}/fragments`),
  cancel: (id) => json('POST', `${jobPath(id)}/cancel`),
  retry: (id) => json('POST', `${jobPath(id)}/retry`),
  drain: (peerId) => json('POST', `${peerPath(peerId)}/drain`),
  undrain: (peerId) => json('POST', `${peerPath(peerId)}/undrain`),
  /** The stderr of a fragment's last try, with its attempt, peer, exit code and reason. */
  async log(id, path) {
    const res = await request('GET', `${jobPath(id)}/fragments/${encodeURIComponent(path)}/log`)
    const meta = JSON.parse(res.headers.get('x-shoal-try') ?? '{}')
    return { ...meta, text: await res.text() }
  }
}

/**
 * Split Server-Sent Events text into events: `{ event, data, id }` for each complete one, and
 * what is left over. Comments (`: keep-alive`) and unknown fields are skipped; `id:` is kept.
 */
export function parseEvents(buffer) {
  const events = []
  const blocks = buffer.replace(/\r\n?/g, '\n').split('\n\n')
  const rest = blocks.pop() ?? ''
  for (const block of blocks) {
    let event = 'message'
    let id
    const data = []
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue
      const colon = line.indexOf(':')
      const field = colon < 0 ? line : line.slice(0, colon)
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
      if (field === 'data') data.push(value)
      else if (field === 'event') event = value
      else if (field === 'id') id = value
    }
    if (data.length > 0) events.push({ event, id, data: data.join('\n') })
  }
  return { events, rest }
}

/**
 * Follow a job's events (GET /v1/jobs/:id/events) with fetch and a stream reader, which, unlike
 * EventSource, can send the token in a header. Calls onJob with each summary; resolves when the
 * stream ends (after a terminal state) or `signal` aborts it.
 */
export async function followJob(id, onJob, signal) {
  const res = await request('GET', `${jobPath(id)}/events`, undefined, signal)
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      const parsed = parseEvents(buffer + value)
      buffer = parsed.rest
      for (const e of parsed.events) if (e.event === 'job') onJob(JSON.parse(e.data))
    }
  } finally {
    reader.releaseLock()
  }
}
