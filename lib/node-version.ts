// Refuses, when the package loads, a Node.js too old for it: Node 18 would load, generate, and only
// fail at toPNG (zlib.crc32 is from Node 20.15). Imported first by the package's entry points.
import { Pg25Error } from './errors'

export const MIN_NODE = [20, 15] as const

/** Throws PG25_UNSUPPORTED, naming both versions, when `version` (default: this Node's) is older than MIN_NODE. */
export function checkNodeVersion (version: string = process.versions.node): void {
  const [major, minor] = version.split('.').map(Number)
  if (major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1])) return
  throw new Pg25Error('PG25_UNSUPPORTED', `@pg25/native needs Node.js ${MIN_NODE.join('.')} or newer; this is Node.js ${version}. ` +
    'Install a current Node.js (20 LTS or later, e.g. from https://nodejs.org or with nvm install 22)')
}

checkNodeVersion()
