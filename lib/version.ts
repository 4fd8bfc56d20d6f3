// The package's own version, read once from its package.json (two levels above dist/lib and lib).
import { readFileSync } from 'node:fs'
import path from 'node:path'

let version: string | undefined

/** This package's version, as its package.json says. */
export function packageVersion (): string {
  version ??= (JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version
  return version
}
