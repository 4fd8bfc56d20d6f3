// The release workflow's steps (.github/workflows/release.yml) as they rehearse here: scripts/release-build.sh
// for linux-x64 (this checkout's build, and the tests that need no GPU on it) and win32-x64 (the MinGW build
// standing in for MSVC), then scripts/release-publish.sh (a dry run without NODE_AUTH_TOKEN). What they leave
// in the release folder is what would be published: it installs with no compiler, and the platform package's
// binary is the one that runs.
import test from 'ava'
import { execFile, spawnSync } from 'node:child_process'
import { promises as fs, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { bareEnv } from '../support/bare-env'

const run = promisify(execFile)
const ROOT = path.join(__dirname, '..', '..', '..')
const BIG = { maxBuffer: 64 << 20 }
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version

const mingw = spawnSync('x86_64-w64-mingw32-g++-posix', ['--version'], { stdio: 'ignore' }).status === 0
if (!mingw) console.log('release.test: skipped: the MinGW compiler is missing (apt-get install g++-mingw-w64-x86-64-posix)')

/** The files of a tarball, unpacked into `dir`: its package folder. */
async function unpack (tarball: string, dir: string): Promise<string> {
  await fs.mkdir(dir, { recursive: true })
  await run('tar', ['-xzf', tarball, '-C', dir])
  return path.join(dir, 'package')
}

const readJson = async (file: string): Promise<Record<string, unknown>> => JSON.parse(await fs.readFile(file, 'utf8'))

;(mingw ? test : test.skip)('the release steps rehearse here and what they pack installs with no compiler, running the platform package\'s binary', async t => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-release-'))
  t.teardown(async () => { await fs.rm(dir, { recursive: true, force: true }) })
  const out = path.join(dir, 'release')
  const env = { ...process.env, RELEASE_DIR: out, NODE_AUTH_TOKEN: '' }
  const step = async (...args: string[]): Promise<string> => (await run('bash', args, { cwd: ROOT, env, ...BIG })).stdout

  t.regex(await step('scripts/release-build.sh', 'linux-x64'), /release-build: rehearsal \(no CUDA 12\.8 here\)/)
  t.regex(await step('scripts/release-build.sh', 'win32-x64'), /release-build: rehearsal \(no MSVC here\)/)
  const published = await step('scripts/release-publish.sh')
  t.regex(published, /^release-publish: no NODE_AUTH_TOKEN: dry run$/m)
  const names = published.split('\n').filter(l => l.startsWith('+ ')).sort()
  t.deepEqual(names, [`+ @pg25/native-linux-x64@${VERSION}`, `+ @pg25/native-win32-x64@${VERSION}`, `+ @pg25/native@${VERSION}`])
  const tarball = (name: string): string => path.join(out, `${name}-${VERSION}.tgz`)

  // The Windows package: a PE binary for win32/x64, and the CUDA it names.
  const win = await unpack(tarball('pg25-native-win32-x64'), path.join(dir, 'win'))
  const winPkg = await readJson(path.join(win, 'package.json'))
  t.deepEqual([winPkg.name, winPkg.version, winPkg.os, winPkg.cpu], ['@pg25/native-win32-x64', VERSION, ['win32'], ['x64']])
  t.deepEqual((await fs.readdir(win)).sort(), ['LICENSE', 'package.json', 'pg25.json', 'pg25.node'])
  t.is((await fs.readFile(path.join(win, 'pg25.node'))).subarray(0, 2).toString('latin1'), 'MZ', 'a Windows (PE) binary')
  t.regex(String((await readJson(path.join(win, 'pg25.json'))).cuda), /^12\.8\./)

  // The main package: the platform packages as optional dependencies at its version, and no binary of its own.
  const main = await unpack(tarball('pg25-native'), path.join(dir, 'main'))
  t.deepEqual((await readJson(path.join(main, 'package.json'))).optionalDependencies,
    { '@pg25/native-linux-x64': VERSION, '@pg25/native-win32-x64': VERSION })
  await t.throwsAsync(fs.access(path.join(main, 'prebuilds')), undefined, 'the binaries are in the platform packages')

  // A user's install, offline and with no compiler: npm skips the Windows package, the install step finds the
  // Linux one's binary and loads it, and a first image comes out of it.
  const bare = await bareEnv(t, dir)
  const app = path.join(dir, 'app')
  await fs.mkdir(app)
  await fs.writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
  const { stdout: installed } = await run(path.join(bare.PATH!, 'npm'), ['install', tarball('pg25-native'), tarball('pg25-native-linux-x64'),
    '--offline', '--no-audit', '--no-fund', '--foreground-scripts'], { cwd: app, env: bare, ...BIG })
  t.regex(installed, /^@pg25\/native: prebuilt binary of @pg25\/native-linux-x64 loaded with CUDA 12\.8\.\d+ \(GPUs need NVIDIA driver R\d+ or newer\)$/m)
  const modules = path.join(app, 'node_modules', '@pg25')
  t.deepEqual((await fs.readdir(modules)).sort(), ['native', 'native-linux-x64'])
  await t.throwsAsync(fs.access(path.join(modules, 'native', 'build')), undefined, 'nothing was compiled')
  const script = `
    const { Pipeline, ensureDemoModel, runtimeInfo } = require('@pg25/native')
    ;(async () => {
      const info = runtimeInfo()
      console.log(info.binary, info.file)
      const pipe = await Pipeline.fromPretrained(await ensureDemoModel(), { onWarning: () => {} })
      const r = await pipe.generate('a red circle on a blue background', { steps: 2, seed: 1 })
      console.log(r.images[0].width, (await r.images[0].toPNG()).length > 1000)
      await pipe.dispose()
    })()`
  const { stdout } = await run(path.join(bare.PATH!, 'node'), ['-e', script], { cwd: app, env: bare })
  const [binary, result] = stdout.trim().split('\n')
  t.is(binary, `package ${path.join(modules, 'native-linux-x64', 'pg25.node')}`)
  t.is(result, '128 true')
})
