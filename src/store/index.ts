export { LevelStore } from './level.ts'
export { MemoryStore } from './memory.ts'
export { type ChangeListener, type ChangeSource, Replica } from './replica.ts'
export type { StateStore, WriteOptions } from './types.ts'
