import test from 'ava'
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { bareEnv } from '../support/bare-env'

const run = promisify(execFile)
const ROOT = path.join(__dirname, '..', '..', '..')
const BIG = { maxBuffer: 64 << 20 }

// The path a user takes: `npm pack` (its prepack compiles the CUDA prebuild, its prepare the TypeScript) in a
// copy of the working tree, then installs of that tarball into empty projects. Packed once for all tests here.
const tmp = fs.mkdtemp(path.join(os.tmpdir(), 'pg25-pack-'))
test.after.always(async () => { await fs.rm(await tmp, { recursive: true, force: true }) })

interface Packed { tarball: string, files: string[] }
const packed: Promise<Packed> = (async () => {
  const dir = await tmp
  const pkg = path.join(dir, 'pkg')
  // Tracked and new (not ignored) files: what a release would pack from this tree. No build output comes along.
  const { stdout: list } = await run('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, ...BIG })
  for (const f of list.split('\n').filter(Boolean)) {
    await fs.mkdir(path.dirname(path.join(pkg, f)), { recursive: true })
    await fs.copyFile(path.join(ROOT, f), path.join(pkg, f)).catch(async err => {
      if (err.code !== 'ENOENT') throw err // deleted in the work tree, not yet in git
    })
  }
  await fs.symlink(path.join(ROOT, 'node_modules'), path.join(pkg, 'node_modules'))
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: pkg, ...BIG })
  // Lifecycle scripts print to stdout before npm's JSON, which starts on a line that is just "[".
  const json = JSON.parse(stdout.slice(stdout.search(/^\[$/m)))[0]
  return { tarball: path.join(dir, json.filename), files: json.files.map((f: { path: string }) => f.path) }
})()

/** An empty project with the tarball installed by `npm install` under `env`. */
async function project (name: string, env: NodeJS.ProcessEnv, ...flags: string[]): Promise<string> {
  const { tarball } = await packed
  const app = path.join(await tmp, name)
  await fs.mkdir(app)
  await fs.writeFile(path.join(app, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }))
  await run('npm', ['install', tarball, '--prefer-offline', '--no-audit', '--no-fund', ...flags], { cwd: app, env, ...BIG })
  return app
}

const runtimeInfo = (pkg: string): string =>
  `require(require('node-gyp-build').resolve(${JSON.stringify(pkg)})).runtimeInfo()`

test('the tarball carries the CUDA prebuild, the compiled API, sources for its maps, and no tests or build output', async t => {
  const { files } = await packed
  const has = new Set(files)
  for (const f of ['package.json', 'README.md', 'LICENSE', 'BENCHMARKS.md', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/cli/index.js',
    'scripts/install.js', 'CMakeLists.txt', 'binding.gyp', 'prebuilds/linux-x64/@pg25+native.glibc.node', 'prebuilds/linux-x64/@pg25+native.glibc.json',
    'models/demo/README.md', 'models/demo/pg25-demo-manifest.json', 'models/demo/unet/diffusion_pytorch_model.fp16.safetensors',
    'models/demo/vae/diffusion_pytorch_model.fp16.safetensors']) {
    t.true(has.has(f), `${f} is packed`)
  }
  // Everything a build from source compiles (binding.gyp lists the CPU sources; CMakeLists adds the CUDA ones).
  const gyp = JSON.parse(await fs.readFile(path.join(ROOT, 'binding.gyp'), 'utf8'))
  for (const src of gyp.targets[0].sources) t.true(has.has(src), `${src} is packed`)
  for (const src of ['native/cuda/kernels.cu', 'native/cuda/attention.cu', 'native/cuda/norms.cu', 'native/cuda/cuda_backend.cc']) t.true(has.has(src), `${src} is packed`)
  const stray = files.filter(f => /^(test|bench|dist\/test|dist\/bench|build[^/]*|native\/fuzz|native\/cuda\/emu|\.git)\//.test(f) ||
    /\.(o|a|tgz|ninja)$|CMakeCache/.test(f) || f === 'scripts/prebuild.js')
  t.deepEqual(stray, [], 'no tests, benchmarks, emulation, fuzzers or build intermediates')
  // Every source map points at sources that are shipped.
  const maps = files.filter(f => f.endsWith('.map'))
  t.true(maps.length > 10)
  const pkgDir = path.join(await tmp, 'pkg')
  for (const m of maps) {
    const { sources } = JSON.parse(await fs.readFile(path.join(pkgDir, m), 'utf8')) as { sources: string[] }
    for (const s of sources) t.true(has.has(path.posix.join(path.posix.dirname(m), s)), `${m} -> ${s} is packed`)
  }
})

// Without install scripts (pnpm 10, --ignore-scripts) the prebuilt binary still loads; `npm rebuild` then runs
// the install step, which says what it found. ESM import and CommonJS require both work, and a real run too.
test('installed with no compiler and no install scripts, the prebuilt CUDA binary loads through require and import', async t => {
  const env = await bareEnv(t, await tmp)
  const app = await project('app', env, '--ignore-scripts')
  const installed = path.join(app, 'node_modules', '@pg25', 'native')
  await t.throwsAsync(fs.access(path.join(installed, 'build')), undefined, 'nothing was compiled')
  // cmake-js (with tar and yargs) is fetched only by a build from source, never by an install that needs none.
  await t.throwsAsync(fs.access(path.join(app, 'node_modules', 'cmake-js')), undefined, 'cmake-js is not installed')

  const { stdout: rebuilt } = await run(path.join(env.PATH!, 'npm'), ['rebuild', '@pg25/native', '--foreground-scripts'], { cwd: app, env, ...BIG })
  const notes = JSON.parse(await fs.readFile(path.join(installed, 'prebuilds', 'linux-x64', '@pg25+native.glibc.json'), 'utf8'))
  t.regex(notes.cuda, /^\d+\.\d+\.\d+$/)
  const line = rebuilt.split('\n').filter(l => l.startsWith('@pg25/native:'))
  t.is(line.length, 1, rebuilt)
  t.regex(line[0], new RegExp(`^@pg25/native: prebuilt binary loaded for linux-x64 with CUDA ${notes.cuda.replace(/\./g, '\\.')} \\(GPUs need NVIDIA driver R\\d+ or newer\\)$`))
  await t.throwsAsync(fs.access(path.join(installed, 'build')), undefined, 'still nothing compiled')

  const cjs = `
    const info = ${runtimeInfo(installed)}
    console.log(require('node-gyp-build').resolve(${JSON.stringify(installed)}))
    console.log(JSON.stringify(info))
    console.log(require('@pg25/native/package.json').name)
    try { require('@pg25/native/dist/lib/cli/index.js'); console.log('deep import allowed') } catch (e) { console.log(e.code) }
    const { Pipeline, ensureDemoModel } = require('@pg25/native')
    ;(async () => {
      const pipe = await Pipeline.fromPretrained(await ensureDemoModel(), { onWarning: () => {} })
      const r = await pipe.generate('a cat in a spacesuit', { steps: 2, seed: 1 })
      console.log(r.images[0].width, (await r.images[0].toPNG()).length > 1000)
      await pipe.dispose()
    })()`
  const { stdout } = await run(path.join(env.PATH!, 'node'), ['-e', cjs], { cwd: app, env })
  const [resolved, info, name, deep, result] = stdout.trim().split('\n')
  t.is(path.relative(installed, resolved), path.join('prebuilds', 'linux-x64', '@pg25+native.glibc.node'))
  const parsed = JSON.parse(info)
  t.true(parsed.cudaCompiled, 'the prebuilt binary has the CUDA backend compiled in')
  t.false(parsed.cudaEmulated)
  t.is(name, '@pg25/native')
  t.is(deep, 'ERR_PACKAGE_PATH_NOT_EXPORTED')
  t.is(result, '128 true')

  // The CLI resolves in the project, as the README says: `npx pg25`.
  const { stdout: version } = await run(path.join(env.PATH!, 'npx'), ['--offline', 'pg25', '--version'], { cwd: app, env })
  t.is(version.trim(), JSON.parse(await fs.readFile(path.join(ROOT, 'package.json'), 'utf8')).version)

  // ESM: named imports, and the same names as CommonJS sees.
  const esm = `
    import { Pipeline, Pg25Error } from '@pg25/native'
    import * as ns from '@pg25/native'
    import { createRequire } from 'node:module'
    const cjs = createRequire(import.meta.url)('@pg25/native')
    const missing = Object.keys(cjs).filter(k => !(k in ns))
    console.log(typeof Pipeline.fromPretrained, new Pg25Error('PG25_NOT_FOUND', 'x').code, JSON.stringify(missing), ns.Pipeline === cjs.Pipeline)`
  await fs.writeFile(path.join(app, 'esm.mjs'), esm)
  const { stdout: esmOut } = await run(path.join(env.PATH!, 'node'), ['esm.mjs'], { cwd: app, env })
  t.is(esmOut.trim(), 'function PG25_NOT_FOUND [] true')

  // TypeScript finds the types through the exports map, for ESM and CommonJS files (the @ts-expect-error
  // lines fail the check if the types resolve to `any`).
  const typed = (style: string): string => `${style}
    const ok: GenerateOptions = { steps: 2, guidanceScale: 3 }
    // @ts-expect-error diffusers' name is not ours
    const bad: GenerateOptions = { num_inference_steps: 2 }
    // @ts-expect-error fromPretrained takes a string
    void Pipeline.fromPretrained(42)
    export { ok, bad }
`
  await fs.writeFile(path.join(app, 'types.mts'), typed("import { Pipeline, type GenerateOptions } from '@pg25/native'"))
  await fs.writeFile(path.join(app, 'types.cts'), typed("import { Pipeline, type GenerateOptions } from '@pg25/native'\nimport pkg = require('@pg25/native')\nvoid pkg.Pg25Error"))
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  const checked = await run(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', 'types.mts', 'types.cts'], { cwd: app, env })
    .then(() => 'ok', (err: { stdout: string }) => err.stdout)
  t.is(checked, 'ok')
})

// The fallback a user without a prebuilt binary gets: a build from source, here with cmake and g++ but no nvcc.
// It says it has no CUDA, the addon agrees, and only the .node file is left of the build.
test('a build from source without nvcc says it has no CUDA and keeps only the addon', async t => {
  const base = await bareEnv(t, await tmp)
  const app = await project('app-src', base, '--ignore-scripts')
  const env = { ...base, PATH: `${base.PATH}:/usr/bin:/bin`, PG25_BUILD_FROM_SOURCE: '1' }
  await t.throwsAsync(run('nvcc', ['--version'], { env }), undefined, 'nvcc must be absent')
  const installed = path.join(app, 'node_modules', '@pg25', 'native')
  const { stdout } = await run('npm', ['rebuild', '@pg25/native', '--foreground-scripts'], { cwd: app, env, ...BIG })
  const lines = stdout.split('\n').filter(l => l.startsWith('@pg25/native:'))
  t.deepEqual(lines, [
    '@pg25/native: building from source for linux-x64: PG25_BUILD_FROM_SOURCE=1',
    '@pg25/native: built from source with cmake-js for linux-x64 without CUDA (CPU backend only: nvcc was not found)'
  ], stdout)
  const left: string[] = []
  for await (const f of walk(path.join(installed, 'build'))) left.push(path.relative(installed, f))
  t.deepEqual(left, [path.join('build', 'Release', 'pg25.node')])
  const { stdout: info } = await run('node', ['-e', `console.log(JSON.stringify(${runtimeInfo(installed)}))`], { cwd: app, env })
  const parsed = JSON.parse(info)
  t.false(parsed.cudaCompiled)
  t.regex(parsed.cuda, /CUDA was not compiled into this build/)
})

async function* walk (dir: string): AsyncGenerator<string> {
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) yield* walk(p)
    else yield p
  }
}
