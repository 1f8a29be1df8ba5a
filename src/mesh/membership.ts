import type { Liveness } from '../core/liveness.ts'
import type { PeerRecord } from '../core/wire.ts'

/** A daemon as this one sees it: its newest heartbeat record and its judged state. */
export interface PeerView extends PeerRecord {
  state: Liveness
  self: boolean
}
