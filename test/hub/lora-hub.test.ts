// loadLoRA by Hub id against the mock Hub: the golden kohya LoRA served as a repo gives the pixels the
// file gives, lands in the Python cache layout, loads again (and offline) without a request; a repo of
// several files needs weightName; missing repos and files are PG25_NOT_FOUND; the CLI's --lora takes ids.
import anyTest, { type TestFn } from 'ava'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFileSync, mkdirSync, mkdtempSync, promises as fs, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { Pipeline, Pg25Error } from '../../lib'
import { downloadFile } from '../../lib/hub'
import { pickLoRAFile } from '../../lib/hub/repo-file'
import { parseLoRAFlags } from '../../lib/lora/flags'
import { GOLDEN, TINY, maxAbsDiff, readGolden } from '../support/helpers'
import { repoDir, useMockHub } from '../support/hub-fixture'
import { sameFile } from '../support/symlinks'

const test = anyTest as TestFn
const KOHYA = path.join(GOLDEN, 'lora', 'lora_kohya.safetensors')
const PEFT = path.join(GOLDEN, 'lora', 'lora_peft.safetensors')
const ONE = 'test-org/pixel-lora'
const TWO = 'test-org/two-loras'

// The repos' folders: one LoRA (with a README beside it), and two LoRAs.
const repos = mkdtempSync(path.join(os.tmpdir(), 'pg25-lora-repos-'))
for (const [dir, files] of [['one', { 'lora_kohya.safetensors': KOHYA }], ['two', { 'kohya.safetensors': KOHYA, 'peft.safetensors': PEFT }]] as const) {
  mkdirSync(path.join(repos, dir))
  for (const [name, from] of Object.entries(files)) copyFileSync(from, path.join(repos, dir, name))
}
writeFileSync(path.join(repos, 'one', 'README.md'), '# a LoRA\n')
const env = useMockHub(test, [{ id: ONE, dir: path.join(repos, 'one') }, { id: TWO, dir: path.join(repos, 'two') }])

const GEN = { steps: 2, width: 64, height: 64, seed: 5 }
const PROMPT = 'a castle on a hill, pixel art'
let pipe: Pipeline
test.before(async () => { pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' }) })
test.afterEach.always(async () => { for (const l of pipe?.loras ?? []) await pipe.unloadLoRA(l.name) })
test.after.always(async () => {
  await pipe?.dispose()
  rmSync(repos, { recursive: true, force: true })
})

const pixels = async (): Promise<Uint8Array> => (await pipe.generate(PROMPT, GEN)).images[0].data
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function refused (t: any, p: Promise<unknown>, code: string, ...parts: string[]): Promise<void> {
  const err = await t.throwsAsync(p, { instanceOf: Pg25Error })
  t.is(err.code, code, err.message)
  for (const s of parts) t.true(err.message.includes(s), `"${s}" in: ${err.message}`)
}

test.serial('a LoRA by Hub id gives the pixels of the same file loaded from disk, from the Python cache layout; a second load makes no request', async t => {
  const { hub, cache } = env()
  const base = await pixels()
  const info = await pipe.loadLoRA(ONE, { scale: 0.8 })
  const blob = path.join(repoDir(cache, ONE), 'blobs', sha256(readFileSync(KOHYA)))
  t.deepEqual(info, { name: 'pixel-lora', scale: 0.8, source: path.join(repoDir(cache, ONE), 'snapshots', hub.repos.get(ONE)!.commit, 'lora_kohya.safetensors'), modules: 232 })
  await sameFile(t, info.source, blob)
  t.is(await fs.readFile(path.join(repoDir(cache, ONE), 'refs', 'main'), 'utf8'), hub.repos.get(ONE)!.commit)
  t.is(hub.count('README.md'), 0) // only the LoRA file is fetched
  const byId = await pixels()
  await pipe.unloadLoRA('pixel-lora')
  await pipe.loadLoRA(KOHYA, { scale: 0.8 })
  const byFile = await pixels()
  t.deepEqual(byId, byFile)
  t.true(maxAbsDiff(byId, base) > 0, 'the LoRA changes the image')
  await pipe.unloadLoRA('lora_kohya')

  hub.requests.length = 0
  t.is((await pipe.loadLoRA(ONE, { name: 'again' })).source, info.source)
  t.deepEqual(hub.requests, [])
})

test.serial('several .safetensors without weightName are refused, naming them, and nothing changes; weightName picks one', async t => {
  const { hub, cache } = env()
  await refused(t, pipe.loadLoRA(TWO), 'PG25_INVALID_ARGUMENT', TWO, 'kohya.safetensors', 'peft.safetensors', 'weightName')
  t.deepEqual(pipe.loras, [])
  t.is(hub.count('/cdn/'), 0)
  const info = await pipe.loadLoRA(TWO, { weightName: 'peft.safetensors' })
  t.is(info.name, 'two-loras')
  await sameFile(t, info.source, path.join(repoDir(cache, TWO), 'blobs', sha256(readFileSync(PEFT))))
  // A file path takes none of the Hub options; unknown options are refused by name.
  await refused(t, pipe.loadLoRA(KOHYA, { weightName: 'x.safetensors' }), 'PG25_INVALID_ARGUMENT', 'weightName')
  await refused(t, pipe.loadLoRA(ONE, { weight_name: 'x' } as any), 'PG25_INVALID_ARGUMENT', 'weight_name', 'weightName')
  await refused(t, pipe.loadLoRA(ONE, { weightName: '../../x.safetensors' }), 'PG25_INVALID_ARGUMENT', '../../x.safetensors')
})

test.serial('downloadFile resumes a cut transfer with a Range request, reports bytes up to the size, and verifies the sha256', async t => {
  const { hub } = env()
  const size = readFileSync(KOHYA).length
  hub.knobs = { cut: { file: 'lora_kohya.safetensors', bytes: 100_000, times: 1 } }
  const seen: number[] = []
  const file = await downloadFile(ONE, undefined, { onProgress: p => { t.is(p.totalBytes, size); seen.push(p.loadedBytes) } })
  t.deepEqual(readFileSync(file), readFileSync(KOHYA))
  t.is(seen.at(-1), size)
  t.deepEqual(hub.requests.filter(r => r.cdn).map(r => r.range), [undefined, 'bytes=100000-'])
  // Bytes that do not match the listing's sha256 are never kept.
  hub.knobs = { corrupt: new Set(['peft.safetensors']) }
  await refused(t, downloadFile(TWO, 'peft.safetensors'), 'PG25_HUB_CORRUPT', 'peft.safetensors')
  await refused(t, downloadFile(TWO, 'peft.safetensors', { retries: 1 } as any), 'PG25_INVALID_ARGUMENT', 'retries')
})

test.serial('diffusers\' choice of the LoRA file when none is named', t => {
  t.is(pickLoRAFile('o/n', ['README.md', 'pytorch_lora_weights.safetensors', 'other.safetensors', 'checkpoint-500/pytorch_lora_weights.safetensors']), 'pytorch_lora_weights.safetensors')
  t.is(pickLoRAFile('o/n', ['a.safetensors', 'scheduler.safetensors', 'optimizer.safetensors', 'model.bin']), 'a.safetensors')
  t.is(pickLoRAFile('o/n', ['README.md']), null)
  t.throws(() => pickLoRAFile('o/n', ['sub/pytorch_lora_weights.safetensors', 'pytorch_lora_weights.safetensors']), { message: /sub\/pytorch_lora_weights.safetensors/ })
})

test.serial('offline mode loads a cached LoRA without a request, and names what the cache lacks', async t => {
  const { hub } = env()
  process.env.HF_HUB_OFFLINE = '1'
  await refused(t, pipe.loadLoRA(ONE), 'PG25_NOT_FOUND', ONE, 'HF_HUB_OFFLINE=1')
  delete process.env.HF_HUB_OFFLINE
  await downloadFile(TWO, 'kohya.safetensors')
  await pipe.loadLoRA(ONE)
  const online = await pixels()
  await pipe.unloadLoRA('pixel-lora')
  hub.requests.length = 0
  process.env.HF_HUB_OFFLINE = '1'
  await pipe.loadLoRA(ONE)
  t.deepEqual(await pixels(), online)
  await refused(t, pipe.loadLoRA(TWO, { weightName: 'peft.safetensors' }), 'PG25_NOT_FOUND', 'peft.safetensors', 'HF_HUB_OFFLINE=1')
  t.deepEqual(hub.requests, [])
})

test.serial('a repo, revision or file the Hub does not have is PG25_NOT_FOUND', async t => {
  const { hub } = env()
  await refused(t, pipe.loadLoRA('test-org/no-such-lora'), 'PG25_NOT_FOUND', 'test-org/no-such-lora')
  await refused(t, pipe.loadLoRA(ONE, { weightName: 'missing.safetensors' }), 'PG25_NOT_FOUND', 'missing.safetensors')
  await refused(t, pipe.loadLoRA(ONE, { revision: 'v9' }), 'PG25_NOT_FOUND', 'v9')
  await refused(t, pipe.loadLoRA('loras/pixel.safetensors'), 'PG25_NOT_FOUND', 'no such file')
  t.deepEqual(pipe.loras, [])
  t.true(hub.requests.length > 0)
})

test.serial('pg25 --lora org/name:SCALE fetches the LoRA and matches diffusers\' golden image at that scale', async t => {
  const { hub } = env()
  const out = path.join(env().home, 'cli.png')
  const cli = path.join(__dirname, '..', '..', 'lib', 'cli', 'index.js')
  const { stdout } = await promisify(execFile)(process.execPath, [cli, 'Astronaut in a jungle, cold color palette, muted colors, detailed, 8k', '--model', TINY, '--device', 'cpu',
    '--steps', '8', '--guidance', '3', '--seed', '42', '--lora', `${ONE}:0.6`, '-o', out, '--json', '-q'])
  t.deepEqual(JSON.parse(stdout).loras, { 'pixel-lora': 0.6 })
  const { data } = await sharp(readFileSync(out)).raw().toBuffer({ resolveWithObject: true })
  const golden = readGolden(path.join(GOLDEN, 'lora', 'lora_p1_scale0.6.safetensors')).image.data
  const d = maxAbsDiff(data, Array.from(golden, x => Math.round(Math.min(1, Math.max(0, x)) * 255)))
  t.true(d <= 1, `image differs by ${d} levels`)
  t.is(hub.count('/cdn/'), 1) // the CLI fetched it; the flags now find it in the cache
  hub.requests.length = 0
  const flags = await parseLoRAFlags([`${ONE}:0.6`, `${PEFT}:0.5`])
  t.deepEqual(flags.map(f => [f.name, f.scale, path.basename(f.file)]), [['pixel-lora', 0.6, 'lora_kohya.safetensors'], ['lora_peft', 0.5, 'lora_peft.safetensors']])
  t.deepEqual(hub.requests, [])
})
