import test from 'ava'
import { execFile } from 'node:child_process'
import { existsSync, promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { Pipeline } from '../../lib'
import { ensureDemoModel } from '../../lib/demo/demo-model'
import { readPngText } from '../../lib/image'
import { CLIPTokenizer } from '../../lib/tokenizer/clip-tokenizer'
import { TINY } from '../support/helpers'
import { MockHub } from '../support/mock-hub'

// The CLI end to end on the tiny model: the same images as the API for the same options, the format
// the extension names, --count files, --json, image-to-image, and progress lines in a log.
const run = promisify(execFile)
const CLI = path.join(__dirname, '..', '..', 'lib', 'cli', 'index.js')
const SMALL = ['--model', TINY, '--device', 'cpu', '--steps', '2', '--width', '64', '--height', '64']
let tmp: string
let pipe: Pipeline
test.before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-cli-'))
  pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
})
test.after.always(async () => {
  await pipe?.dispose()
  await fs.rm(tmp, { recursive: true, force: true })
})

// libvips' cache keeps the files it read open, and Windows cannot delete an open file (the folder's removal).
if (process.platform === 'win32') sharp.cache(false)
const pixels = async (file: string): Promise<Uint8Array> => new Uint8Array(await sharp(file).raw().toBuffer())

test('--help lists every option and command; serve --help lists the server\'s', async t => {
  const { stdout } = await run(process.execPath, [CLI, '--help'])
  for (const opt of ['--output', '--model', '--config', '--negative', '--prompt2', '--negative2', '--image', '--strength', '--count', '--json', '--steps', '--guidance',
    '--width', '--height', '--seed', '--scheduler', '--device', 'cuda:N', '--variant', 'PG25_MODEL', '.jpg', '.webp', 'out-2.png', 'pg25 serve', 'pg25 download', 'pg25 worker']) {
    t.true(stdout.includes(opt), opt)
  }
  const serve = await run(process.execPath, [CLI, 'serve', '--help'])
  for (const opt of ['--port', '--host', '--queue', '--max-pixels', '--token', 'PG25_SERVER_TOKEN', '--headers-timeout', '--request-timeout', '--model']) t.true(serve.stdout.includes(opt), opt)
})

test('with no model it runs the demo model, says so, and writes a PNG with a summary line', async t => {
  const out = path.join(tmp, 'demo.png')
  const env: NodeJS.ProcessEnv = { ...process.env, PG25_DEMO_DIR: path.join(tmp, 'demo-model') }
  delete env.PG25_MODEL
  const { stderr } = await run(process.execPath, [CLI, 'a cat in a spacesuit', '-o', out, '--steps', '3', '--seed', '11', '--device', 'cpu'], { env })
  t.regex(stderr, /built-in demo model/)
  t.regex(stderr, /not Playground v2\.5's quality/)
  t.regex(stderr, /--model \(or PG25_MODEL\)/)
  t.regex(stderr, /done in [\d.]+ s · seed 11 · 128x128 on cpu · .*demo\.png/)
  const meta = await sharp(out).metadata()
  t.is(meta.format, 'png')
  t.is(meta.width, 128)
})

test('--model DIR with options gives the same image as the API, and the PNG keeps its parameters', async t => {
  const out = path.join(tmp, 'tiny.png')
  await run(process.execPath, [CLI, 'a photo of a cat', '--model', TINY, '-o', out, '--steps', '4', '--seed', '7', '--negative', 'blurry, low quality', '--guidance', '3', '--width', '128', '--height', '64', '--scheduler', 'euler', '-q', '--device', 'cpu',
    '--prompt2', 'a painting of a cat', '--negative2', 'dark'])
  const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true })
  t.is(info.width, 128)
  t.is(info.height, 64)
  const r = await pipe.generate('a photo of a cat', { steps: 4, seed: 7, negativePrompt: 'blurry, low quality', guidanceScale: 3, width: 128, height: 64, scheduler: 'euler', prompt2: 'a painting of a cat', negativePrompt2: 'dark' })
  t.deepEqual(new Uint8Array(data), r.images[0].data)
  const params = readPngText(await fs.readFile(out)).parameters
  t.regex(params, /^a photo of a cat\nNegative prompt: blurry, low quality\nSteps: 4, Sampler: Euler Karras, CFG scale: 3, Seed: 7, Size: 128x64, Model: tiny-pg25/)
})

test('the extension picks the format: JPEG and WebP through sharp, PNG in any case of .png; each keeps the parameters', async t => {
  for (const [name, format, magic] of [['a.jpg', 'jpeg', 'ffd8ff'], ['b.JPEG', 'jpeg', 'ffd8ff'], ['c.webp', 'webp', '52494646'], ['d.PNG', 'png', '89504e47']] as const) {
    const out = path.join(tmp, name)
    await run(process.execPath, [CLI, 'a cat', ...SMALL, '--seed', '3', '-q', '-o', out])
    const bytes = await fs.readFile(out)
    t.is(bytes.subarray(0, magic.length / 2).toString('hex'), magic, name)
    if (format === 'webp') t.is(bytes.toString('latin1', 8, 12), 'WEBP')
    const meta = await sharp(out).metadata()
    t.is(meta.format, format, name)
    t.is(meta.width, 64)
    const params = format === 'png' ? readPngText(bytes).parameters : meta.exif?.toString('latin1')
    t.true(params?.includes('a cat\nSteps: 2, Sampler: DPM++ 2M Karras, CFG scale: 3, Seed: 3, Size: 64x64, Model: tiny-pg25'), name)
  }
  // Lossy, but the same picture as the PNG: close to the API's pixels on average.
  const r = await pipe.generate('a cat', { steps: 2, width: 64, height: 64, seed: 3 })
  const jpeg = await pixels(path.join(tmp, 'a.jpg'))
  let diff = 0
  for (let i = 0; i < jpeg.length; i++) diff += Math.abs(jpeg[i] - r.images[0].data[i])
  t.true(diff / jpeg.length < 12, `mean difference ${diff / jpeg.length}`)
})

test('--count N writes FILE, FILE-2, ... with the images of one batched API call', async t => {
  const out = path.join(tmp, 'batch.png')
  const { stderr } = await run(process.execPath, [CLI, 'a dog', ...SMALL, '--seed', '5', '--count', '3', '-q', '-o', out])
  t.regex(stderr, /batch\.png, .*batch-2\.png, .*batch-3\.png\n$/)
  const r = await pipe.generate('a dog', { steps: 2, width: 64, height: 64, seed: 5, count: 3 })
  for (const [i, f] of ['batch.png', 'batch-2.png', 'batch-3.png'].entries()) t.deepEqual(await pixels(path.join(tmp, f)), r.images[i].data, f)
  t.notDeepEqual(r.images[0].data, r.images[1].data)
})

test('--json prints one JSON summary on stdout and nothing else', async t => {
  const out = path.join(tmp, 'summary.webp')
  const { stdout, stderr } = await run(process.execPath, [CLI, 'a bird', ...SMALL, '--seed', '9', '--count', '2', '--json', '-o', out])
  t.is(stdout.split('\n').length, 2) // one line and its newline
  const s = JSON.parse(stdout)
  t.deepEqual(s.files, [out, path.join(tmp, 'summary-2.webp')])
  for (const f of s.files) t.is((await sharp(f).metadata()).format, 'webp')
  t.like(s, { format: 'webp', seed: 9, width: 64, height: 64, steps: 2, guidanceScale: 3, count: 2, device: 'cpu', model: TINY })
  for (const k of ['loadMs', 'generateMs', 'writeMs', 'totalMs']) t.true(Number.isFinite(s.timings[k]) && s.timings[k] >= 0, k)
  t.true(s.timings.totalMs >= s.timings.loadMs + s.timings.generateMs)
  // Progress still goes to stderr, in a log one line per tenth.
  t.regex(stderr, /^loading: 100% \(/m)
  t.regex(stderr, /^steps: 2\/2 \(100%\)/m)
})

test('--image and --strength run image-to-image like the API', async t => {
  const input = path.join(tmp, 'input.png')
  await sharp({ create: { width: 72, height: 64, channels: 3, background: { r: 200, g: 120, b: 40 } } }).png().toFile(input)
  const out = path.join(tmp, 'img2img.png')
  const { stdout } = await run(process.execPath, [CLI, 'a sunset', '--model', TINY, '--device', 'cpu', '--steps', '4', '--seed', '2', '--image', input, '--strength', '0.5', '-q', '--json', '-o', out])
  t.like(JSON.parse(stdout), { width: 72, height: 64, image: input, strength: 0.5 })
  const r = await pipe.generate('a sunset', { steps: 4, seed: 2, image: input, strength: 0.5 })
  t.deepEqual(await pixels(out), r.images[0].data)
  t.regex(readPngText(await fs.readFile(out)).parameters, /Denoising strength: 0\.5/)
})

test('loading and steps show progress in a log: one line per tenth, bytes growing to the total', async t => {
  const out = path.join(tmp, 'progress.png')
  const { stderr } = await run(process.execPath, [CLI, 'x', '--model', TINY, '--device', 'cpu', '--steps', '20', '--width', '64', '--height', '64', '-o', out])
  const loads = [...stderr.matchAll(/^loading: (\d+)% \(([\d.]+) (KiB|MiB) of ([\d.]+) MiB\)$/gm)]
  t.true(loads.length >= 5, stderr)
  const pct = loads.map(m => Number(m[1]))
  t.deepEqual(pct, [...pct].sort((a, b) => a - b))
  t.is(pct.at(-1), 100)
  t.is(loads.at(-1)![2], loads.at(-1)![4])
  const steps = [...stderr.matchAll(/^steps: (\d+)\/20 \((\d+)%\), [\d.]+ (it\/s|s\/it), ETA \d+:\d\d$/gm)].map(m => Number(m[1]))
  t.deepEqual(steps, [2, 4, 6, 8, 10, 12, 14, 16, 18, 20])
})

test('--model takes a Hub id: downloaded once with a byte bar, then loaded from the cache', async t => {
  const hub = await MockHub.start([{ id: 'test-org/tiny-pg25', dir: TINY }])
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, HF_HOME: path.join(tmp, 'hf-home'), HF_ENDPOINT: hub.url }
    for (const v of ['HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_TOKEN', 'HF_HUB_OFFLINE']) delete env[v]
    const args = [CLI, 'a fox', '--model', 'test-org/tiny-pg25', '--variant', 'fp16', '--device', 'cpu', '--steps', '2', '--width', '64', '--height', '64', '--seed', '4', '--json']
    const first = await run(process.execPath, [...args, '-o', path.join(tmp, 'hub-1.png')], { env })
    t.regex(first.stderr, /^downloading: 100% \(([\d.]+ MiB) of \1(, [\d.]+ [KMG]iB\/s, ETA \d+:\d\d)?\)\n(.*\n)*loading: 100% \(/m)
    t.like(JSON.parse(first.stdout), { model: 'test-org/tiny-pg25', seed: 4 })
    const second = await run(process.execPath, [...args, '-o', path.join(tmp, 'hub-2.png')], { env })
    t.notRegex(second.stderr, /downloading/)
    const r = await pipe.generate('a fox', { steps: 2, width: 64, height: 64, seed: 4 })
    t.deepEqual(await pixels(path.join(tmp, 'hub-1.png')), r.images[0].data)
    t.deepEqual(await pixels(path.join(tmp, 'hub-2.png')), r.images[0].data)
  } finally {
    await hub.close()
  }
})

// `script` runs the CLI on a pseudo-terminal, as a user's shell would.
;(existsSync('/usr/bin/script') ? test : test.skip)('on a terminal: bars redrawn in place, bytes for loading, it/s and ETA for steps', async t => {
  const out = path.join(tmp, 'tty.png')
  const cmd = [process.execPath, CLI, 'x', '--model', TINY, '--device', 'cpu', '--width', '64', '--height', '64', '--steps', '20', '-o', out].map(a => `'${a}'`).join(' ')
  const { stdout } = await run('script', ['-qfec', cmd, '/dev/null'])
  t.notRegex(stdout, /loading: |steps: /) // no log lines
  const frames = stdout.split('\r')
  const loads = frames.filter(f => f.startsWith('loading '))
  t.regex(loads.at(-1)!, /^loading +\[#{24}\] ([\d.]+ MiB) \/ \1 {2}vae\x1b\[K/)
  t.regex(frames.find(f => f.startsWith('steps '))!, /^steps +\[[#.]{24}\] \d+\/20/)
  t.regex(frames.filter(f => f.startsWith('steps ')).at(-1)!, /^steps +\[#{24}\] 20\/20 {2}[\d.]+ (it\/s|s\/it) {2}ETA 0:00\x1b\[K/)
  t.regex(stdout, /done in [\d.]+ s · seed \d+ · 64x64 on cpu/)
})

test('errors are one clear line and a non-zero exit, never a stack trace', async t => {
  const e = await t.throwsAsync(run(process.execPath, [CLI, 'x', '--model', path.join(tmp, 'none'), '-q']))
  t.regex((e as any).stderr, /^pg25: .*none: model directory not found.*\(PG25_NOT_FOUND\)\n$/)
  const e2 = await t.throwsAsync(run(process.execPath, [CLI, 'x', '--model', TINY, '--width', '100', '-q', '--device', 'cpu']))
  t.regex((e2 as any).stderr, /^pg25: --width must be a multiple of 8.*\(PG25_INVALID_ARGUMENT\)\n$/)
  const e3 = await t.throwsAsync(run(process.execPath, [CLI]))
  t.is((e3 as any).code, 2)
  const e4 = await t.throwsAsync(run(process.execPath, [CLI, 'a', 'cat']))
  t.is((e4 as any).code, 2)
  t.regex((e4 as any).stderr, /give exactly one prompt \(quote it\); got 2 words: "a" "cat"/)
})

test('a single-file checkpoint goes through --model file.safetensors --config DIR', async t => {
  const missing = path.join(tmp, 'model.safetensors')
  const e = await t.throwsAsync(run(process.execPath, [CLI, 'x', '--model', missing, '--config', TINY, '-q', '-o', path.join(tmp, 'sf.png')])) as any
  t.regex(e.stderr, /model\.safetensors.*the checkpoint.*\(PG25_NOT_FOUND\)/)
})

test('copies of the demo model are identical, and it tokenizes with its own vocabulary', async t => {
  const a = await ensureDemoModel(path.join(tmp, 'demo-a'))
  const b = await ensureDemoModel(path.join(tmp, 'demo-b'))
  const fa = await fs.readFile(path.join(a, 'unet', 'diffusion_pytorch_model.fp16.safetensors'))
  const fb = await fs.readFile(path.join(b, 'unet', 'diffusion_pytorch_model.fp16.safetensors'))
  t.true(fa.equals(fb))
  const tok = await CLIPTokenizer.fromPretrained(path.join(a, 'tokenizer'))
  const vocab = JSON.parse(await fs.readFile(path.join(a, 'tokenizer', 'vocab.json'), 'utf8')) as Record<string, number>
  t.deepEqual(tok.encode('a cat').slice(0, 4), [vocab['<|startoftext|>'], vocab['a</w>'], vocab['cat</w>'], vocab['<|endoftext|>']])
  t.deepEqual(tok.encode('a red circle').slice(1, 4), [vocab['a</w>'], vocab['red</w>'], vocab['circle</w>']])
  const tok2 = await CLIPTokenizer.fromPretrained(path.join(a, 'tokenizer_2'))
  t.is(tok2.padId, vocab['!'])
})
