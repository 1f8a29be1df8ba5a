import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DaemonProcess, stopAll, waitUntil } from '../../scripts/lib/local-mesh.ts'
import { ShoalClient } from '../../src/cli/client.ts'
import type { JobSummary } from '../../src/core/api.ts'
import { client, TEST_CONFIG } from './helpers.ts'

const CONFIG = {
  ...TEST_CONFIG,
  capacity: 2,
  // Runs until the job's GATE file exists: the test decides when the job changes.
  tasks: {
    ...TEST_CONFIG.tasks,
    gate: { command: ['sh', '-c', 'while [ ! -e "$GATE" ]; do sleep 0.05; done; cat'] }
  }
}

interface Sse {
  id: string | undefined
  job: JobSummary
}

/** An SSE connection read event by event; `next(ms)` is undefined when none came in time. */
async function open(url: string, lastEventId?: string) {
  const abort = new AbortController()
  const res = await fetch(url, {
    headers: lastEventId !== undefined ? { 'last-event-id': lastEventId } : {},
    signal: abort.signal
  })
  const reader = (res.body as ReadableStream<Uint8Array>).getReader()
  const decoder = new TextDecoder()
  let buffer = ''
  let pending: ReturnType<typeof reader.read> | undefined
  const next = async (ms: number): Promise<Sse | undefined> => {
    const deadline = Date.now() + ms
    for (;;) {
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const lines = buffer.slice(0, end).split('\n')
        buffer = buffer.slice(end + 2)
        const data = lines.find((l) => l.startsWith('data: '))
        if (data !== undefined)
          return { id: lines.find((l) => l.startsWith('id: '))?.slice(4), job: JSON.parse(data.slice(6)) }
      }
      const left = deadline - Date.now()
      if (left <= 0) return undefined
      pending ??= reader.read()
      const r = await Promise.race([
        pending as Promise<{ done: boolean; value?: Uint8Array }>,
        new Promise<'late'>((ok) => setTimeout(() => ok('late'), left))
      ])
      if (r === 'late') return undefined
      pending = undefined
      if (r.done) return undefined
      buffer += decoder.decode(r.value, { stream: true })
    }
  }
  return { next, close: () => abort.abort() }
}

/** A TCP relay to the daemon that the test can cut, counting connections and Last-Event-IDs. */
function relay(port: number) {
  const sockets = new Set<Socket>()
  const lastIds: Array<string | undefined> = []
  const server: Server = createServer((down) => {
    const up = connect(port, '127.0.0.1')
    sockets.add(down).add(up)
    down.once('data', (head) => {
      lastIds.push(/^last-event-id: (.*)\r$/im.exec(head.toString())?.[1])
      up.write(head)
      down.pipe(up)
    })
    up.pipe(down)
    for (const s of [down, up]) s.on('error', () => undefined).on('close', () => sockets.delete(s))
  })
  return {
    listen: () =>
      new Promise<string>((ok) =>
        server.listen(0, '127.0.0.1', () =>
          ok(`http://127.0.0.1:${(server.address() as { port: number }).port}`)
        )
      ),
    cut: () => {
      for (const s of sockets) s.destroy()
    },
    lastIds,
    close: () => new Promise((ok) => server.close(ok))
  }
}

describe('job events resume from Last-Event-ID', () => {
  const d = new DaemonProcess({ name: 'sse', config: CONFIG })
  const dir = mkdtempSync(join(tmpdir(), 'shoal-sse-'))
  beforeAll(async () => {
    await d.start()
  })
  afterAll(async () => {
    await stopAll([d])
    rmSync(dir, { recursive: true, force: true })
  })

  /** A job of two gated fragments, both RUNNING: the last event seen before the gate opens. */
  async function running(gate: string): Promise<{ id: string; seen: Sse }> {
    const j = await client(d.api).submit({
      task: 'gate',
      items: ['a', 'b'],
      fragmentSize: 1,
      env: { GATE: gate }
    })
    const s = await open(`${d.api}/v1/jobs/${j.id}/events`)
    let seen: Sse | undefined
    while (seen?.job.statusSummary.RUNNING !== 2) seen = await s.next(10_000)
    s.close()
    return { id: j.id, seen }
  }

  it('a resumed stream does not repeat the summary the client holds, and does not miss the next', async () => {
    const gate = join(dir, 'gate-1')
    const { id, seen } = await running(gate)
    expect(seen.id).toMatch(/^\d+-[0-9a-z]+$/)
    // A fresh stream sends the current summary at once; a resumed one owes nothing yet.
    const fresh = await open(`${d.api}/v1/jobs/${id}/events`)
    expect((await fresh.next(2000))?.job).toEqual(seen.job)
    fresh.close()
    const resumed = await open(`${d.api}/v1/jobs/${id}/events`, seen.id)
    expect(await resumed.next(1500)).toBeUndefined()
    writeFileSync(gate, '')
    const next = await resumed.next(10_000)
    expect(next?.job.state).toBe('SUCCEEDED')
    expect(next?.id).not.toBe(seen.id)
    expect(Number(next?.id?.split('-')[0])).toBeGreaterThan(Number(seen.id?.split('-')[0]))
    // Resumed from the terminal event: the stream ends with nothing more.
    const after = await open(`${d.api}/v1/jobs/${id}/events`, next?.id)
    expect(await after.next(1500)).toBeUndefined()
    after.close()
  })

  it('the typed client resumes a dropped stream: each summary once, the end not missed', async () => {
    const gate = join(dir, 'gate-2')
    const r = relay(Number(new URL(d.api).port))
    try {
      const { id } = await running(gate)
      const got: JobSummary[] = []
      const c = client(await r.listen())
      for await (const job of c.events(id)) {
        got.push(job)
        if (got.length === 1) {
          // The connection drops, then the job ends while no stream is open.
          r.cut()
          writeFileSync(gate, '')
          await waitUntil('the job to end', async () => (await client(d.api).job(id)).state === 'SUCCEEDED')
        }
      }
      expect(got.map((j) => j.state)).toEqual(['RUNNING', 'SUCCEEDED'])
      expect(r.lastIds.length).toBeGreaterThanOrEqual(2)
      expect(r.lastIds[0]).toBeUndefined()
      expect(r.lastIds.at(-1)).toMatch(/^\d+-[0-9a-z]+$/)
      expect(existsSync(gate)).toBe(true)
    } finally {
      r.cut()
      await r.close()
    }
  })

  it('a quiet stream is not cut by the request timeout: the client follows a job that does not change for longer', async () => {
    // The request timeout bounds the wait for the stream to start, not the stream (it used to:
    // every quiet stretch cost a reconnect, and after five the client gave up on a healthy job).
    const gate = join(dir, 'quiet')
    const r = relay(Number(new URL(d.api).port))
    try {
      const { id } = await running(gate)
      const quick = new ShoalClient(await r.listen(), { timeoutMs: 500 })
      const states: string[] = []
      setTimeout(() => writeFileSync(gate, ''), 6000)
      for await (const j of quick.events(id)) states.push(j.state)
      expect(states.at(-1)).toBe('SUCCEEDED')
      // One stream for the whole six quiet seconds, not one per timeout.
      expect(r.lastIds).toHaveLength(1)
    } finally {
      r.cut()
      await r.close()
    }
  }, 60_000)
})
