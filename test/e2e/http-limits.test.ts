/**
 * HTTP limits (issue 8): a daemon holds at most httpMaxConnections connections and closes
 * clients that are too slow to send their headers or their body, without cutting event streams.
 */
import { connect, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DaemonProcess, FAST, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { health, submit } from './helpers.ts'

const LIMITS = {
  httpMaxConnections: 20,
  httpHeadersTimeoutMs: 1000,
  httpRequestTimeoutMs: 2000,
  httpKeepAliveTimeoutMs: 1000
}

const d = new DaemonProcess({
  name: 'limits',
  config: { ...FAST, ...LIMITS, tasks: { ...FAST.tasks, sleepy: { command: ['sh', '-c', 'sleep 4; cat'] } } }
})
let port = 0

beforeAll(async () => {
  await d.start()
  port = Number(new URL(d.api).port)
})
afterAll(async () => {
  // stop() signals by PID, then SIGKILLs by PID if the daemon takes too long.
  await d.stop()
  d.removeData()
})

/** A raw client socket that records what it received and when it was closed. */
interface Probe {
  socket: Socket
  received: string
  closed: boolean
  timer?: NodeJS.Timeout
}

function open(): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port })
    const p: Probe = { socket, received: '', closed: false }
    socket.on('data', (b) => {
      p.received += b.toString()
    })
    socket.on('error', () => undefined) // a reset or a write after close: the close is what counts
    socket.on('close', () => {
      p.closed = true
      clearInterval(p.timer)
    })
    socket.once('connect', () => resolve(p))
    socket.once('error', reject)
  })
}

/** Write `chunk()` every `everyMs` until the server closes the connection. */
function trickle(p: Probe, everyMs: number, chunk: () => string): void {
  p.timer = setInterval(() => {
    if (!p.closed && p.socket.writable) p.socket.write(chunk())
  }, everyMs)
}

describe('HTTP limits', () => {
  it('closes connections beyond httpMaxConnections at once, and slowloris clients after the header time', async () => {
    const probes: Probe[] = []
    try {
      for (let i = 0; i < 60; i++) {
        const p = await open()
        p.socket.write(`GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n`)
        let n = 0
        trickle(p, 200, () => `X-Slow-${n++}: still coming\r\n`)
        probes.push(p)
      }
      // A generous bound: the header time is 1 s.
      await waitUntil(
        'every slowloris connection closed by the server',
        () => probes.every((p) => p.closed),
        10_000
      )
      // Those beyond the limit were closed before a byte was read; the others got a 408.
      const dropped = probes.filter((p) => p.received === '')
      expect(dropped.length).toBeGreaterThanOrEqual(60 - LIMITS.httpMaxConnections)
      for (const p of probes.filter((x) => x.received !== '')) expect(p.received).toMatch(/^HTTP\/1\.1 408 /)
      expect(probes.length - dropped.length).toBeGreaterThan(0)
    } finally {
      for (const p of probes) p.socket.destroy()
    }
    expect((await health(d.api)).status).toBe('ok')
  })

  it('answers a body still arriving after httpRequestTimeoutMs with 408 and closes', async () => {
    const p = await open()
    try {
      p.socket.write(
        'POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' +
          `Content-Length: ${1024 * 1024}\r\n\r\n{"task":"echo","items":["`
      )
      trickle(p, 200, () => 'a'.repeat(1024))
      await waitUntil('the slow body to be cut off', () => p.closed, 15_000)
      expect(p.received).toMatch(/^HTTP\/1\.1 408 /)
    } finally {
      p.socket.destroy()
    }
  })

  it('closes an idle keep-alive connection after httpKeepAliveTimeoutMs', async () => {
    const p = await open()
    try {
      p.socket.write('GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n')
      await waitUntil('the health answer', () => p.received.includes('"status":"ok"'), 10_000)
      expect(p.received).toMatch(/^HTTP\/1\.1 200 /)
      await waitUntil('the idle connection to be closed', () => p.closed, 10_000)
    } finally {
      p.socket.destroy()
    }
  })

  it('keeps an event stream open past httpRequestTimeoutMs and still delivers its events', async () => {
    const job = await submit(d.api, { task: 'sleepy', items: ['x'] })
    const opened = Date.now()
    const res = await fetch(`${d.api}/v1/jobs/${job.id}/events`, { signal: AbortSignal.timeout(30_000) })
    expect(res.status).toBe(200)
    const states: string[] = []
    const decoder = new TextDecoder()
    let buffered = ''
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      buffered += decoder.decode(chunk, { stream: true })
      for (const m of buffered.matchAll(/^data: (.*)$/gm))
        states.push((JSON.parse(m[1] as string) as { state: string }).state)
      buffered = buffered.slice(buffered.lastIndexOf('\n') + 1)
    }
    // The task sleeps 4 s, longer than the request time (2 s) plus Node's checking interval.
    expect(Date.now() - opened).toBeGreaterThan(LIMITS.httpRequestTimeoutMs + 1000)
    expect(states.at(-1)).toBe('SUCCEEDED')
    expect(states.length).toBeGreaterThan(1)
  })
})
