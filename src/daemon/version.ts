import { readFileSync } from 'node:fs'

/**
 * Shoal's version: package.json's, read once. The file is two levels up from this one both in
 * the sources (src/daemon) and in the compiled build (dist/daemon).
 */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version
