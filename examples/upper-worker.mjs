// A persistent command worker for Shoal ("protocol": "ndjson"): one JSON line in per fragment,
// one JSON line out, echoing the request's id. Any language works the same way; this one is Node.
import { createInterface } from 'node:readline'

for await (const line of createInterface({ input: process.stdin })) {
  const { id, items, env } = JSON.parse(line)
  const output = items.map((item) => `${String(item).toUpperCase()} (fragment ${env.SHOAL_FRAGMENT_PATH})`)
  process.stdout.write(`${JSON.stringify({ id, output })}\n`)
}
