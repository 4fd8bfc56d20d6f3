import test from 'ava'
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { Pipeline } from '../lib'
import { demoVocabulary, ensureDemoModel } from '../lib/demo/demo-model'
import { CLIPTokenizer } from '../lib/tokenizer/clip-tokenizer'
import { TINY } from './helpers'

const run = promisify(execFile)
const CLI = path.join(__dirname, '..', 'lib', 'cli.js')
let tmp: string
test.before(async () => { tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-cli-')) })
test.after.always(async () => { await fs.rm(tmp, { recursive: true, force: true }) })

test('--help lists every option', async t => {
  const { stdout } = await run(process.execPath, [CLI, '--help'])
  for (const opt of ['--output', '--model', '--negative', '--steps', '--guidance', '--width', '--height', '--seed', '--scheduler', '--device', '--variant', 'PG25_MODEL', '--max-pixels', '--token', 'PG25_SERVER_TOKEN', '--headers-timeout', '--request-timeout']) {
    t.true(stdout.includes(opt), opt)
  }
})

test('with no model it runs the demo model, says so, and writes a PNG with a summary line', async t => {
  const out = path.join(tmp, 'demo.png')
  const env = { ...process.env, PG25_DEMO_DIR: path.join(tmp, 'demo-model'), PG25_MODEL: '' }
  delete (env as any).PG25_MODEL
  const { stderr } = await run(process.execPath, [CLI, 'a cat in a spacesuit', '-o', out, '--steps', '3', '--seed', '11', '--device', 'cpu'], { env })
  t.regex(stderr, /built-in demo model/)
  t.regex(stderr, /untrained/)
  t.regex(stderr, /--model \(or PG25_MODEL\)/)
  t.regex(stderr, /done in [\d.]+ s · seed 11 · 256x256 on cpu · .*demo\.png/)
  const meta = await sharp(out).metadata()
  t.is(meta.format, 'png')
  t.is(meta.width, 256)
})

test('--model DIR with options gives the same image as the API', async t => {
  const out = path.join(tmp, 'tiny.png')
  await run(process.execPath, [CLI, 'a photo of a cat', '--model', TINY, '-o', out, '--steps', '4', '--seed', '7', '--negative', 'blurry, low quality', '--guidance', '3', '--width', '128', '--height', '64', '--scheduler', 'euler', '-q', '--device', 'cpu'])
  const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true })
  t.is(info.width, 128)
  t.is(info.height, 64)
  const pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  const r = await pipe.generate('a photo of a cat', { steps: 4, seed: 7, negativePrompt: 'blurry, low quality', guidanceScale: 3, width: 128, height: 64, scheduler: 'euler' })
  t.deepEqual(new Uint8Array(data), r.images[0].data)
  await pipe.dispose()
})

test('errors are one clear line and a non-zero exit, never a stack trace', async t => {
  const e = await t.throwsAsync(run(process.execPath, [CLI, 'x', '--model', path.join(tmp, 'none'), '-q']))
  t.regex((e as any).stderr, /^pg25: .*none: model directory not found \(PG25_NOT_FOUND\)\n$/)
  const e2 = await t.throwsAsync(run(process.execPath, [CLI, 'x', '--model', TINY, '--width', '100', '-q', '--device', 'cpu']))
  t.regex((e2 as any).stderr, /width must be a multiple of 8.*\(PG25_INVALID_ARGUMENT\)/)
  const e3 = await t.throwsAsync(run(process.execPath, [CLI]))
  t.is((e3 as any).code, 2)
})

test('the demo model is deterministic and tokenizes with its own vocabulary', async t => {
  const a = await ensureDemoModel(path.join(tmp, 'demo-a'))
  const b = await ensureDemoModel(path.join(tmp, 'demo-b'))
  const fa = await fs.readFile(path.join(a, 'unet', 'diffusion_pytorch_model.safetensors'))
  const fb = await fs.readFile(path.join(b, 'unet', 'diffusion_pytorch_model.safetensors'))
  t.true(fa.equals(fb))
  const tok = await CLIPTokenizer.fromPretrained(path.join(a, 'tokenizer'))
  const { vocab } = demoVocabulary()
  t.deepEqual(tok.encode('a cat').slice(0, 4), [vocab['<|startoftext|>'], vocab['a</w>'], vocab['cat</w>'], vocab['<|endoftext|>']])
  const tok2 = await CLIPTokenizer.fromPretrained(path.join(a, 'tokenizer_2'))
  t.is(tok2.padId, vocab['!'])
})
