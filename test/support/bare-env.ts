// An environment whose PATH has node, npm, npx and sh only: no cmake, nvcc or C++ compiler, as on a user's
// machine that installs a prebuilt binary. The tests that install tarballs run npm and node under it.
import type { ExecutionContext } from 'ava'
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Writes the bin folder into `dir` (the demo model is unpacked under it too) and checks the compilers are absent. */
export async function bareEnv (t: Pick<ExecutionContext, 'throwsAsync'>, dir: string): Promise<NodeJS.ProcessEnv> {
  const bin = path.join(dir, 'bin')
  await fs.mkdir(bin, { recursive: true })
  const npmCli = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js')
  await fs.symlink(process.execPath, path.join(bin, 'node')).catch(() => {})
  await fs.writeFile(path.join(bin, 'npm'), `#!/bin/sh\nexec "${process.execPath}" "${npmCli}" "$@"\n`, { mode: 0o755 })
  await fs.writeFile(path.join(bin, 'npx'), `#!/bin/sh\nexec "${process.execPath}" "${npmCli.replace(/npm-cli\.js$/, 'npx-cli.js')}" "$@"\n`, { mode: 0o755 })
  await fs.symlink('/bin/sh', path.join(bin, 'sh')).catch(() => {})
  const env = { ...process.env, PATH: bin, PG25_DEMO_DIR: path.join(dir, 'demo-model'), npm_config_nodedir: '' }
  for (const tool of ['cmake', 'nvcc', 'g++', 'c++', 'make']) {
    await t.throwsAsync(run(tool, ['--version'], { env }), undefined, `${tool} must be absent`)
  }
  return env
}
