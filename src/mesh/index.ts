export { loadIdentity } from './identity.ts'
export type { PeerView } from './membership.ts'
export { Mesh, type MeshComponents, type MeshInit } from './mesh.ts'
