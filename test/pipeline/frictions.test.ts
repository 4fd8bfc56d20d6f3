// What a new user tripped on (issue 29), one test each: runtimeInfo(), the Node version check, the CPU
// fallback notice, download progress per file, throttled load progress, cacheDir, TimeoutError, the
// server's hint for another library's field names, and --json on failure.
import anyTest, { type TestFn } from 'ava'
import { execFile, spawnSync } from 'node:child_process'
import { existsSync, promises as fs, readFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { AbortError, Pipeline, runtimeInfo, type LoadProgress } from '../../lib'
import { checkNodeVersion } from '../../lib/node-version'
import { loadReporter } from '../../lib/cli/progress'
import { TINY } from '../support/helpers'
import { ID, repoDir, useMockHub } from '../support/hub-fixture'
import { serveTiny } from '../support/served'

const test = anyTest as TestFn
const env = useMockHub(test)
const served = serveTiny(test, {})
const ROOT = path.join(__dirname, '..', '..', '..')
const CLI = path.join(__dirname, '..', '..', 'lib', 'cli', 'index.js')
const run = promisify(execFile)

test('runtimeInfo() says which binary runs (built from source here), its CUDA runtime and the CPU kernel', t => {
  const info = runtimeInfo()
  t.is(info.binary, 'source')
  t.is(info.file, path.join(ROOT, 'build', 'Release', 'pg25.node'))
  t.regex(info.cpuKernel, /^(avx512|avx2|generic)$/)
  t.true(info.threads >= 1)
  t.is(info.version, JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version)
  // CUDA compiled in (nvcc found at build time) names its runtime; without it, null.
  if (info.cuda !== null) t.regex(info.cuda, /^\d+\.\d+$/)
  t.is(typeof info.cudaStatus, 'string')
})

test('an old Node is refused when the package loads, naming both versions', t => {
  t.throws(() => checkNodeVersion('18.20.4'),
    { code: 'PG25_UNSUPPORTED', message: /needs Node\.js 20\.15 or newer; this is Node\.js 18\.20\.4/ } as any)
  t.throws(() => checkNodeVersion('20.14.0'), { code: 'PG25_UNSUPPORTED' } as any)
  t.notThrows(() => checkNodeVersion('20.15.0'))
  t.notThrows(() => checkNodeVersion('22.1.0'))
  const lib = JSON.stringify(path.join(__dirname, '..', '..', 'lib'))
  const script = `Object.defineProperty(process, 'versions', { value: { ...process.versions, node: '18.20.4' } }); require(${lib})`
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' })
  t.not(r.status, 0)
  t.regex(r.stderr, /@pg25\/native needs Node\.js 20\.15 or newer; this is Node\.js 18\.20\.4/)
})

test('the CPU fallback notice says what is missing without contradicting itself, on stderr once, and -q silences it', async t => {
  if (runtimeInfo().cuda === null ||
    !/no NVIDIA driver/.test(runtimeInfo().cudaStatus)) { t.pass('only where CUDA is compiled in and no driver is found'); return }
  const script = `const { Pipeline } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'lib'))});
    (async () => { for (let i = 0; i < 2; i++) await (await Pipeline.fromPretrained(${JSON.stringify(TINY)})).dispose() })()`
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' })
  t.is(r.status, 0, r.stderr)
  const lines = r.stderr.trim().split('\n')
  t.deepEqual(lines, ['@pg25/native: running on the CPU (no usable NVIDIA GPU: no NVIDIA driver (libcuda.so.1) was found); ' +
    'device \'cpu\' (--device cpu) skips looking for a GPU'])
  t.notRegex(r.stderr, /insufficient|trace-warnings|\(node:\d+\)/)
  const args = [CLI, 'a cat', '--model', TINY, '--steps', '1', '--width', '64', '--height', '64', '-o', path.join(env().home, 'q.png')]
  const loud = await run(process.execPath, args)
  t.regex(loud.stderr, /running on the CPU/)
  const quiet = await run(process.execPath, [...args, '-q'])
  t.notRegex(quiet.stderr, /running on the CPU/)
})

test.serial('download progress pairs each file with its own bytes, beside the totals; the CLI bar shows speed and ETA', async t => {
  const { hub } = env()
  const events: LoadProgress[] = []
  await (await Pipeline.fromPretrained(ID, { device: 'cpu', variant: 'fp16', onProgress: p => events.push(p) })).dispose()
  const downloads = events.filter(e => e.phase === 'download')
  const files = hub.repos.get(ID)!.files
  t.true(downloads.length >= 4)
  for (const e of downloads) {
    t.is(e.fileTotalBytes, files.get(e.file!)!.data.length, e.file)
    t.true(e.fileLoadedBytes! <= e.fileTotalBytes!)
  }
  // Every file ends at its own size; the totals run over all of them.
  for (const f of new Set(downloads.map(e => e.file))) t.is(downloads.filter(e => e.file === f).at(-1)!.fileLoadedBytes,
    files.get(f!)!.data.length)
  t.is(downloads.at(-1)!.loadedBytes, downloads.at(-1)!.totalBytes)
  t.true(downloads.some(e => e.fileTotalBytes! < e.totalBytes))

  const lines: string[] = []
  let now = 0
  const bar = loadReporter({ write: s => lines.push(s), isTTY: false }, () => now)
  const total = 100 * 2 ** 20
  for (let b = 0; b <= total; b += 2 ** 20) {
    bar.update({ phase: 'download', file: 'unet/x.safetensors', fileLoadedBytes: b, fileTotalBytes: total, loadedBytes: b,
      totalBytes: total })
    now += 100 // 10 MiB/s
  }
  t.is(lines[0], 'downloading: 10% (10.0 MiB of 100.0 MiB, 10.0 MiB/s, ETA 0:09)\n')
  const tty: string[] = []
  now = 0
  const live = loadReporter({ write: s => tty.push(s), isTTY: true }, () => now)
  live.update({ phase: 'download', file: 'unet/x.safetensors', fileLoadedBytes: 0, fileTotalBytes: total, loadedBytes: 0,
    totalBytes: 2 * total })
  now = 1000
  live.update({ phase: 'download', file: 'unet/x.safetensors', fileLoadedBytes: 50 * 2 ** 20, fileTotalBytes: total,
    loadedBytes: 50 * 2 ** 20, totalBytes: 2 * total })
  t.regex(tty.at(-1)!, /50\.0 MiB \/ 200\.0 MiB {2}50\.0 MiB\/s {2}ETA 0:03 {2}unet\/x\.safetensors \(50\.0 MiB of 100\.0 MiB\)/)
})

test('load progress comes in hundredths of the total, not per tensor', async t => {
  const events: LoadProgress[] = []
  await (await Pipeline.fromPretrained(TINY, { device: 'cpu', onProgress: e => events.push(e) })).dispose()
  // At most one report per hundredth, plus each component's start and end.
  t.true(events.length <= 100 + 2 * 4, `${events.length} events`)
  t.true(events.filter(e => e.component === 'unet').length > 10)
  t.is(events.at(-1)!.loadedBytes, events.at(-1)!.totalBytes)
})

test.serial('cacheDir puts a Hub model where it says, and leaves the default cache alone', async t => {
  const { cache } = env()
  const mine = path.join(env().home, 'mine')
  const pipe = await Pipeline.fromPretrained(ID, { device: 'cpu', variant: 'fp16', cacheDir: mine })
  t.true(pipe.dir.startsWith(path.join(repoDir(mine), 'snapshots')))
  t.is(pipe.model, ID)
  await pipe.dispose()
  t.false(existsSync(cache))
  await t.throwsAsync(Pipeline.fromPretrained(ID, { cache_dir: mine } as any),
    { message: /unknown option "cache_dir": this library calls it "cacheDir"/ })
  await fs.rm(mine, { recursive: true })
})

test('AbortSignal.timeout surfaces as a TimeoutError (still an AbortError, code ABORT_ERR)', async t => {
  const e = await t.throwsAsync(served.pipe.generate('a cat', { width: 64, height: 64, steps: 1000, signal: AbortSignal.timeout(200) }))
  t.is(e!.name, 'TimeoutError')
  t.true(e instanceof AbortError)
  t.is((e as any).code, 'ABORT_ERR')
  const late = AbortSignal.timeout(1)
  await new Promise(resolve => setTimeout(resolve, 20))
  await t.throwsAsync(Pipeline.fromPretrained(TINY, { device: 'cpu', signal: late }), { name: 'TimeoutError' })
  const ac = new AbortController()
  ac.abort()
  await t.throwsAsync(served.pipe.generate('a cat', { width: 64, height: 64, steps: 1, signal: ac.signal }), { name: 'AbortError' })
})

test('the server names our field for another library\'s', async t => {
  const r = await fetch(`${served.bases[0]}/generate`,
    { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'x', num_inference_steps: 2 }) })
  t.is(r.status, 400)
  t.regex((await r.json() as any).error, /unknown field "num_inference_steps": this library calls it "steps"/)
})

test('--json prints { error, code } on stdout when the run fails', async t => {
  const e = await t.throwsAsync(run(process.execPath, [CLI, 'a cat', '--model', path.join(ROOT, 'no-such-model'), '--json', '-q'])) as any
  t.is(e.code, 1)
  const out = JSON.parse(e.stdout)
  t.is(out.code, 'PG25_NOT_FOUND')
  t.regex(out.error, /no-such-model/)
  const flags = await t.throwsAsync(run(process.execPath, [CLI, 'a cat', '--stepz', '2', '--json'])) as any
  t.deepEqual(Object.keys(JSON.parse(flags.stdout)), ['error', 'code'])
  t.is(JSON.parse(flags.stdout).code, 'PG25_INVALID_ARGUMENT')
})
