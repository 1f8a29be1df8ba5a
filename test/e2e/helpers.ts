import { getJson, postJson, waitUntil } from '../../scripts/lib/local-mesh.ts'

export interface Job {
  id: string
  state: string
  fragments: number
  statusSummary: Record<string, number>
  replicas?: number
}

export interface Frag {
  index: number
  path: string
  state: string
  statusReason: string | null
  attempt: number
  epoch: number
  peer: string | null
}

export interface Peer {
  peerId: string
  name: string
  state: string
  synced: boolean
}

export const fragments = (api: string, id: string) => getJson<Frag[]>(api, `/v1/jobs/${id}/fragments`)
export const job = (api: string, id: string) => getJson<Job>(api, `/v1/jobs/${id}`)
export const peers = (api: string) => getJson<Peer[]>(api, '/v1/peers')

export async function submit(api: string, spec: unknown): Promise<Job> {
  const res = await postJson<Job>(api, '/v1/jobs', spec)
  if (res.status !== 202) throw new Error(`submit: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body
}

/** Wait until the job reaches `state` as seen by the daemon at `api`. */
export function waitState(api: string, id: string, state: string, timeoutMs = 60_000): Promise<Job> {
  return waitUntil(
    `job ${id} ${state} at ${api}`,
    async () => {
      const j = await job(api, id)
      return j.state === state ? j : null
    },
    timeoutMs,
    100
  )
}

/** Wait until every daemon sees every other as alive and synced. */
export async function waitMeshReady(apis: string[], timeoutMs = 30_000): Promise<void> {
  for (const api of apis) {
    await waitUntil(
      `${api} to see ${apis.length} alive, synced daemons`,
      async () => (await peers(api)).filter((p) => p.state === 'alive' && p.synced).length === apis.length,
      timeoutMs
    )
  }
}

/** The expected output of the echo-like tasks for items, in order. */
export const lines = (items: Array<string | number>) => items.map((x) => `${x}\n`).join('')

/** Is a process alive? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
