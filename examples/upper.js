// A module task for Shoal: items in, output lines out. Runs in a warm worker thread.
// ctx has jobId, path, fragmentIndex, fragmentCount, attempt, leaseEpoch (the fencing token), peerId, env.
export default function upper(items, ctx) {
  return items.map((item) => `${String(item).toUpperCase()} (fragment ${ctx.path})`)
}
