export { LevelStore } from './level.ts'
export { MemoryStore } from './memory.ts'
export type { StateStore, WriteOptions } from './types.ts'
export { Replica, type ChangeListener, type ChangeSource } from './replica.ts'
