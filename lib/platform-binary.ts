// The per-platform binary packages (@pg25/native-linux-x64, @pg25/native-win32-x64: the addon with the CUDA
// backend, one optional dependency per platform, as sharp and node-llama-cpp ship theirs). Before the
// first use in a process the binary is loaded once in a child process: one that crashes there, or lacks
// the addon's exports, is refused with the reason, and the caller falls back (a build from source, or
// PG25_NO_BINARY) instead of taking the user's process down.
import { spawnSync } from 'node:child_process'
import path from 'node:path'

/** The package name for this platform, e.g. '@pg25/native-linux-x64'. */
export const platformPackage = (platform: string = process.platform, arch: string = process.arch): string => `@pg25/native-${platform}-${arch}`

/** The binary of this platform's package as resolved from `root` (the main package's folder), or undefined when it is not installed. */
export function platformBinary (root: string): string | undefined {
  try {
    return path.join(path.dirname(require.resolve(`${platformPackage()}/package.json`, { paths: [root] })), 'pg25.node')
  } catch {
    return undefined
  }
}

const checked = new Map<string, string | null>()

/**
 * Loads `file` in a child process and checks it exports every name in `exportsNeeded` and answers
 * runtimeInfo(). Null when it does; else why not, in words. Once per file and process.
 */
export function checkBinary (file: string, exportsNeeded: readonly string[]): string | null {
  const known = checked.get(file)
  if (known !== undefined) return known
  const probe = `const a = require(${JSON.stringify(file)})
const missing = ${JSON.stringify(exportsNeeded)}.filter(n => !(n in a))
if (missing.length) { process.stderr.write('it lacks the exports ' + missing.join(', ')); process.exit(3) }
a.runtimeInfo()`
  const r = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, PG25_ADDON: undefined } })
  let why: string | null = null
  if (r.error) why = `it could not be checked (${r.error.message})`
  else if (r.signal) why = `loading it crashed the check process (${r.signal})`
  else if (r.status === 3) why = r.stderr.trim()
  else if (r.status !== 0) {
    const line = r.stderr.split('\n').find(l => /Error/.test(l)) ?? r.stderr.trim()
    why = line ? `it does not load: ${line.trim()}` : `loading it ended the check process with status ${r.status}`
  }
  checked.set(file, why)
  return why
}
