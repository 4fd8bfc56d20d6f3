import test from 'ava'
import { execFileSync } from 'node:child_process'
import { constants, openSync, closeSync, promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import sharp from 'sharp'
import { Pg25Error, Pipeline, readPngText } from '../../lib'
import { syntheticWeights } from '../support/synthetic-weights'
import { writeSafetensors } from '../../lib/io/safetensors-writer'
import { TINY, declaredPng } from '../support/helpers'

// Careless and hostile inputs through the API: each one gets a Pg25Error naming what is wrong,
// before any work it would waste, and never a hang, a NaN image or a process-sized allocation.
let pipe: Pipeline
let tmp: string
const fifos: string[] = []
test.before(async () => {
  pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu', onWarning: () => {} })
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-hostile-'))
})
test.after.always(async () => {
  // Unblock any reader a regression left stuck on a FIFO, so the process can exit.
  for (const f of fifos) {
    try { closeSync(openSync(f, constants.O_WRONLY | constants.O_NONBLOCK)) } catch {}
  }
  await pipe?.dispose()
  await fs.rm(tmp, { recursive: true, force: true })
})

/** A copy of the tiny model to break, in its own folder. */
async function modelCopy (name: string): Promise<string> {
  const dir = path.join(tmp, name)
  await fs.cp(TINY, dir, { recursive: true })
  return dir
}

/** Rejects within `ms` or fails: what used to hang must now answer. */
async function settlesWithin<T> (p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const bound = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms) })
  try {
    return await Promise.race([p, bound])
  } finally {
    clearTimeout(timer)
  }
}

const rejectsWith = async (t: any, p: Promise<unknown>, code: string, re: RegExp): Promise<Pg25Error> => {
  const e = await t.throwsAsync(p) as Pg25Error
  t.true(e instanceof Pg25Error, String(e))
  t.is(e.code, code, e.message)
  t.regex(e.message, re)
  return e
}

test('an image declaring 16000x16000 is refused from its header, with or without an output size', async t => {
  const bomb = declaredPng(16000, 16000)
  t.true(bomb.length < 64 * 1024)
  const rss = process.memoryUsage.rss()
  await rejectsWith(t, pipe.generate('x', { image: bomb, steps: 4 }), 'PG25_INVALID_ARGUMENT', /image: is 16000x16000; images up to 8192x8192 are accepted/)
  await rejectsWith(t, pipe.generate('x', { image: bomb, steps: 4, width: 64, height: 64 }), 'PG25_INVALID_ARGUMENT', /16000x16000/)
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="16000" height="16000"/>')
  await rejectsWith(t, pipe.generate('x', { image: svg, steps: 4 }), 'PG25_INVALID_ARGUMENT', /format "svg" is not supported/)
  await rejectsWith(t, pipe.generate('x', { image: Buffer.alloc(0), steps: 4 }), 'PG25_INVALID_ARGUMENT', /image: is empty/)
  // Nothing near the 768 MB such an image decodes to was allocated.
  t.true(process.memoryUsage.rss() - rss < 200 * 2 ** 20)
  // A real image within the limits still works, sized from its header.
  const small = await sharp({ create: { width: 70, height: 45, channels: 3, background: 'teal' } }).png().toBuffer()
  const r = await pipe.generate('x', { image: small, steps: 4, seed: 1 })
  t.deepEqual([r.width, r.height], [64, 40])
})

test('a request the memory cannot hold is refused before it runs', async t => {
  await rejectsWith(t, pipe.generate('x', { width: 8192, height: 8192, count: 64, steps: 1 }), 'PG25_OUT_OF_MEMORY', /64 image\(s\) of 8192x8192 need about [\d.]+ GiB of working memory on the cpu, but only [\d.]+ GiB is available/)
  const limited = await Pipeline.fromPretrained(TINY, { device: 'cpu', memoryLimit: 128 * 2 ** 20 })
  try {
    await rejectsWith(t, limited.generate('x', { width: 1024, height: 1024, steps: 1 }), 'PG25_OUT_OF_MEMORY', /1 image\(s\) of 1024x1024 need about 0\.\d\d GiB .* but memoryLimit leaves 0\.\d\d GiB beside the model/)
    t.is((await limited.generate('x', { width: 64, height: 64, steps: 1 })).images.length, 1)
  } finally {
    await limited.dispose()
  }
})

test('FIFOs as an image, model_index.json or weight file are refused instead of blocking forever', async t => {
  const fifo = (file: string): void => { execFileSync('mkfifo', [file]); fifos.push(file) }
  const img = path.join(tmp, 'image.fifo')
  fifo(img)
  await rejectsWith(t, settlesWithin(pipe.generate('x', { image: img, steps: 4 }), 10_000), 'PG25_INVALID_ARGUMENT', /image\.fifo: image is not a regular file/)
  const m1 = await modelCopy('fifo-index')
  await fs.rm(path.join(m1, 'model_index.json'))
  fifo(path.join(m1, 'model_index.json'))
  await rejectsWith(t, settlesWithin(Pipeline.fromPretrained(m1, { device: 'cpu' }), 10_000), 'PG25_NOT_FOUND', /model_index\.json: model_index\.json is not a regular file/)
  const m2 = await modelCopy('fifo-weights')
  const weights = path.join(m2, 'vae', 'diffusion_pytorch_model.fp16.safetensors')
  await fs.rm(weights)
  fifo(weights)
  await rejectsWith(t, settlesWithin(Pipeline.fromPretrained(m2, { device: 'cpu' }), 10_000), 'PG25_BAD_WEIGHTS', /the weight file is not a regular file/)
  // Calls after these still run.
  t.is((await pipe.generate('x', { steps: 1, width: 64, height: 64 })).images.length, 1)
})

test('numeric options are bounded to what the model can use', async t => {
  for (const [opts, re] of [
    [{ guidanceScale: 1e308 }, /guidanceScale must be a number from 0 to 100, got 1e\+308/],
    [{ originalSize: { width: 1e300, height: 64 } }, /originalSize must be \{ width, height \} in integers from 1 to 16384/],
    [{ targetSize: { width: 64, height: 16385 } }, /targetSize/],
    [{ cropTopLeft: { top: 1e300, left: 0 } }, /cropTopLeft must be \{ top, left \} in integers from 0 to 16384/],
    [{ latents: new Float32Array(256).fill(Infinity) }, /latents must be finite/],
    [{ width: '64' }, /width must be a multiple of 8 between 8 and 8192, got "64"/],
    [{ steps: '20' }, /steps must be an integer from 1 to 1000, got "20"/]
  ] as Array<[object, RegExp]>) {
    await rejectsWith(t, pipe.generate('x', { width: 64, height: 64, steps: 1, ...opts } as any), 'PG25_INVALID_ARGUMENT', re)
  }
  // null means the default, for every option alike.
  const r = await pipe.generate('x', { seed: null, steps: null, width: 64, height: 64, guidanceScale: null } as any)
  t.true(Number.isInteger(r.seed))
})

test('a run that produces NaN latents is refused with PG25_NON_FINITE, never returned as an image', async t => {
  const dir = await modelCopy('nan-unet')
  const cfgPath = path.join(dir, 'unet', 'config.json')
  const weights = syntheticWeights({ kind: 'unet', className: 'UNet2DConditionModel', configPath: cfgPath, configText: await fs.readFile(cfgPath, 'utf8') }, 1)
  weights.find(w => w.name === 'conv_out.bias')!.data.fill(Number.NaN)
  await fs.rm(path.join(dir, 'unet', 'diffusion_pytorch_model.fp16.safetensors'))
  await writeSafetensors(path.join(dir, 'unet', 'diffusion_pytorch_model.safetensors'), weights)
  const broken = await Pipeline.fromPretrained(dir, { device: 'cpu' })
  try {
    await rejectsWith(t, broken.generate('x', { steps: 2, width: 64, height: 64 }), 'PG25_NON_FINITE', /NaN or infinite latents \(64x64, 2 steps, guidance 3\)/)
    await rejectsWith(t, broken.generate('x', { steps: 1, width: 64, height: 64, outputType: 'latent' }), 'PG25_NON_FINITE', /NaN/)
  } finally {
    await broken.dispose()
  }
})

test('a 900 KB prompt is refused before tokenizing; the truncation warning quotes the longest allowed by its ends, once', async t => {
  const warnings: string[] = []
  const p = await Pipeline.fromPretrained(TINY, { device: 'cpu', onWarning: m => warnings.push(m) })
  try {
    const huge = 'a cat '.repeat(150_000) + 'ending words'
    for (const promptStyle of ['plain', 'a1111', 'comfy'] as const) {
      const run = p.generate(huge, { steps: 1, width: 64, height: 64, promptStyle })
      await rejectsWith(t, run, 'PG25_INVALID_ARGUMENT', /prompt has 900012 characters; at most 8192 are read/)
    }
    const prompt = 'a cat '.repeat(1300) + 'ending words'
    const r = await p.generate(prompt, { steps: 1, width: 64, height: 64, promptStyle: 'plain' })
    t.is(warnings.length, 1)
    t.deepEqual(r.warnings, warnings)
    t.true(warnings[0].length < 500, `${warnings[0].length} characters`)
    t.regex(warnings[0], /truncated because CLIP can only handle sequences up to 77 tokens: prompt: ".*" … ".*ending words" \(\d+ chara/)
  } finally {
    await p.dispose()
  }
})

test('component folders and weight files that resolve outside the model folder are refused, unread', async t => {
  const outside = path.join(tmp, 'outside')
  await fs.mkdir(outside)
  const m1 = await modelCopy('symlinked-folder')
  await fs.rename(path.join(m1, 'vae'), path.join(outside, 'vae'))
  await fs.symlink(path.join(outside, 'vae'), path.join(m1, 'vae'))
  await rejectsWith(t, Pipeline.fromPretrained(m1, { device: 'cpu' }), 'PG25_BAD_CONFIG', /vae: the vae folder resolves outside the model directory/)
  const secret = path.join(outside, 'secret.txt')
  await fs.writeFile(secret, 'SECRET-TOKEN-0123456789 and more private text')
  const m2 = await modelCopy('symlinked-file')
  const w = path.join(m2, 'unet', 'diffusion_pytorch_model.fp16.safetensors')
  await fs.rm(w)
  await fs.symlink(secret, w)
  const e = await rejectsWith(t, Pipeline.fromPretrained(m2, { device: 'cpu' }), 'PG25_BAD_WEIGHTS', /weight file resolves outside the model directory/)
  // No byte of the file, not even as a header length, reaches the message.
  t.false(/SECRET|\d{12,}/.test(e.message), e.message)
})

test('PNG parameters name the model only when the caller gives its name', async t => {
  const r = await pipe.generate('x', { steps: 1, width: 64, height: 64, seed: 3 })
  t.notRegex(readPngText(await r.images[0].toPNG()).parameters, /Model:|tiny-pg25/)
  const named = await Pipeline.fromPretrained(TINY, { device: 'cpu', modelName: 'playground-v2.5-tiny' })
  try {
    const r2 = await named.generate('x', { steps: 1, width: 64, height: 64, seed: 3 })
    t.regex(readPngText(await r2.images[0].toPNG()).parameters, /Size: 64x64, Model: playground-v2\.5-tiny, Version/)
  } finally {
    await named.dispose()
  }
})
