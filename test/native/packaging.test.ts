import test from 'ava'
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { Pg25Error } from '../../lib/errors'
import { loadAddonFrom } from '../../lib/native'

const run = promisify(execFile)

// The loader where the install step never ran (pnpm 10, --ignore-scripts on a platform without a prebuilt
// binary): no binary at all is PG25_NO_BINARY with the command that builds one; a binary that is there but
// does not load is a different failure, named by its file.
test('a package with no compiled addon fails with PG25_NO_BINARY and says how to build it', async t => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-nobinary-'))
  try {
    await fs.writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: '@pg25/native', version: '0.0.0' }))
    const err = t.throws(() => loadAddonFrom(dir), { instanceOf: Pg25Error })
    t.is((err as Pg25Error).code, 'PG25_NO_BINARY')
    t.true(err!.message.includes('`npm rebuild @pg25/native`'), err!.message)
    t.true(err!.message.includes(`${process.platform}-${process.arch}`), err!.message)

    const broken = path.join(dir, 'prebuilds', `${process.platform}-${process.arch}`, '@pg25+native.glibc.node')
    await fs.mkdir(path.dirname(broken), { recursive: true })
    await fs.writeFile(broken, 'not an ELF file')
    const bad = t.throws(() => loadAddonFrom(dir), { instanceOf: Pg25Error })
    t.is((bad as Pg25Error).code, 'PG25_INTERNAL')
    t.true(bad!.message.includes(broken), bad!.message)
    t.true(bad!.message.includes('`npm rebuild @pg25/native`'), bad!.message)
  } finally {
    await fs.rm(dir, { recursive: true, force: true })
  }
})

test('the addon this checkout built loads through the same loader and reports its backends', t => {
  const { addon } = loadAddonFrom(path.join(__dirname, '..', '..', '..'))
  const info = addon.runtimeInfo()
  t.is(typeof info.cudaCompiled, 'boolean')
  // A build without CUDA says so in its own words; one with it describes the GPU (or its absence) instead.
  t.is(/CUDA was not compiled into this build/.test(info.cuda), !info.cudaCompiled, info.cuda)
})

// This platform's binary package, checked in a child process before the first use: a binary that crashes
// when loaded, lacks a symbol it links against or lacks the addon's exports is refused with the reason,
// and the loader falls back to a build from source or PG25_NO_BINARY, never taking this process down.
/** A folder laid out as an installed @pg25/native with this platform's binary package beside it: the package's folder. */
async function platformRoot (dir: string): Promise<string> {
  await fs.writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: '@pg25/native', version: '0.0.0' }))
  const name = `@pg25/native-${process.platform}-${process.arch}`
  const pkg = path.join(dir, 'node_modules', name)
  await fs.mkdir(pkg, { recursive: true })
  await fs.writeFile(path.join(pkg, 'package.json'), JSON.stringify({ name, version: '0.0.0' }))
  return pkg
}
const ADDON_C = '#include <node_api.h>\nstatic napi_value init(napi_env env, napi_value exports) { return exports; }\nNAPI_MODULE(pg25, init)\n'
const BROKEN: Array<[string, string, RegExp]> = [
  ['crashes when loaded', '#include <stdlib.h>\n__attribute__((constructor)) static void boom(void) { abort(); }\n', /crashed the check process \(SIGABRT\)/],
  ['lacks a symbol', 'extern int pg25_no_such_symbol;\nint* pg25_use = &pg25_no_such_symbol;\n', /does not load: .*pg25_no_such_symbol/],
  ['lacks the exports', ADDON_C, /lacks the exports Engine, CancelToken, inspectSafetensors/]
]
for (const [what, code, reason] of BROKEN) {
  test(`a platform package binary that ${what} is refused: the build from source, else PG25_NO_BINARY`, async t => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-platform-'))
    try {
      const pkg = await platformRoot(dir)
      await fs.writeFile(path.join(dir, 'broken.c'), code)
      const headers = path.join(__dirname, '..', '..', '..', 'node_modules', 'node-api-headers', 'include')
      await run('cc', ['-shared', '-fPIC', '-I', headers, '-o', path.join(pkg, 'pg25.node'), path.join(dir, 'broken.c')])
      const err = t.throws(() => loadAddonFrom(dir), { instanceOf: Pg25Error })
      t.is((err as Pg25Error).code, 'PG25_NO_BINARY')
      t.true(err!.message.includes(path.join(pkg, 'pg25.node')), err!.message)
      t.regex(err!.message, reason)

      const built = path.join(dir, 'build', 'Release', 'pg25.node')
      await fs.mkdir(path.dirname(built), { recursive: true })
      await fs.symlink(path.join(__dirname, '..', '..', '..', 'build', 'Release', 'pg25.node'), built)
      const fallback = loadAddonFrom(dir)
      t.is(fallback.kind, 'source')
      t.is(typeof fallback.addon.runtimeInfo().cudaCompiled, 'boolean')
    } finally {
      await fs.rm(dir, { recursive: true, force: true })
    }
  })
}

test('a platform package binary that loads in the child process is the one used', async t => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-platform-'))
  try {
    const pkg = await platformRoot(dir)
    await fs.symlink(path.join(__dirname, '..', '..', '..', 'build', 'Release', 'pg25.node'), path.join(pkg, 'pg25.node'))
    const found = loadAddonFrom(dir)
    t.is(found.kind, 'package')
    t.is(found.file, path.join(pkg, 'pg25.node'))
    t.is(typeof found.addon.runtimeInfo().cudaCompiled, 'boolean')
  } finally {
    await fs.rm(dir, { recursive: true, force: true })
  }
})

// The per-platform packages as scripts/pack-platform.js packs them: each installs only where its os/cpu fit,
// the installed linux-x64 binary is found from the main package's folder, and a release refuses any CUDA but 12.8.
test('the per-platform packages pack, install where they fit, and are picked at run time; releases refuse CUDA other than 12.8', async t => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-platform-pack-'))
  const script = path.join(__dirname, '..', '..', '..', 'scripts', 'pack-platform.js')
  const binary = path.join(__dirname, '..', '..', '..', 'build', 'Release', 'pg25.node')
  try {
    const pack = async (target: string, ...flags: string[]): Promise<string> =>
      (await run(process.execPath, [script, target, binary, '--out', dir, ...flags])).stdout.trim()
    const linux = await pack('linux-x64', '--cuda', '12.8.93')
    const win = await pack('win32-x64', '--cuda', '12.8.93')
    const refused = await t.throwsAsync(pack('linux-x64', '--cuda', '13.0.48', '--release')) as Error & { stderr: string }
    t.regex(refused.stderr, /built with CUDA 13\.0\.48; releases are built with CUDA 12\.8/)

    const app = path.join(dir, 'app')
    await fs.mkdir(app)
    await fs.writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }))
    const install = async (tarball: string): Promise<unknown> =>
      await run('npm', ['install', tarball, '--offline', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: app })
    const other = process.platform === 'win32' ? linux : win
    const notHere = await t.throwsAsync(install(other)) as Error & { stderr: string }
    t.regex(notHere.stderr, /EBADPLATFORM/)
    await install(process.platform === 'win32' ? win : linux)
    const main = path.join(app, 'node_modules', '@pg25', 'native')
    await fs.mkdir(main, { recursive: true })
    await fs.writeFile(path.join(main, 'package.json'), JSON.stringify({ name: '@pg25/native', version: '0.1.0' }))
    const found = loadAddonFrom(main)
    t.is(found.kind, 'package')
    t.is(found.file, path.join(app, 'node_modules', '@pg25', `native-${process.platform}-${process.arch}`, 'pg25.node'))
    t.is(JSON.parse(await fs.readFile(found.file.replace(/\.node$/, '.json'), 'utf8')).cuda, '12.8.93')
  } finally {
    await fs.rm(dir, { recursive: true, force: true })
  }
})
