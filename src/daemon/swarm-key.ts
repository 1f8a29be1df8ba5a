import { generateKey } from '@libp2p/pnet'

/** A new pre-shared swarm key, as text in the format @libp2p/pnet reads (`shoal keygen --swarm`). */
export function newSwarmKey(): string {
  const key = new Uint8Array(95)
  generateKey(key)
  const text = new TextDecoder().decode(key)
  return text.endsWith('\n') ? text : `${text}\n`
}
