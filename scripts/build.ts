/**
 * `npm run build`: the compiled build a production install runs (dist/, from src/): tsc emits
 * the JavaScript, then every file of src/ that is not TypeScript (the dashboard's pages) is
 * copied beside it. `npm pack` runs it (prepack).
 */
import { execFileSync } from 'node:child_process'
import { cpSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const dist = join(root, 'dist')
rmSync(dist, { recursive: true, force: true })
execFileSync(
  process.execPath,
  [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
  {
    cwd: root,
    stdio: 'inherit'
  }
)
cpSync(join(root, 'src'), dist, { recursive: true, filter: (src) => !src.endsWith('.ts') })
process.stdout.write(`built ${dist}\n`)
