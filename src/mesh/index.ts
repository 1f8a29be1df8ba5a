export { loadIdentity } from './identity.ts'
export { Membership, type PeerView } from './membership.ts'
export { Mesh, type MeshComponents, type MeshInit } from './mesh.ts'
