import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { describeSystemError, ShoalError } from '../core/errors.ts'

/** Load the daemon's Ed25519 identity from its data dir, creating it on first start. */
export async function loadIdentity(dataDir: string): Promise<PrivateKey> {
  const file = join(dataDir, 'identity.key')
  try {
    return privateKeyFromProtobuf(await readFile(file))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ShoalError('STARTUP_FAILED', `dataDir: cannot read ${file}: ${describeSystemError(err)}`, {
        cause: err
      })
    }
  }
  const key = await generateKeyPair('Ed25519')
  await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
  await chmod(file, 0o600)
  return key
}
