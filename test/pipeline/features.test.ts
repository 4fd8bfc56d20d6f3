import test from 'ava'
import path from 'node:path'
import sharp from 'sharp'
import { Pipeline, Pg25Error, TorchGenerator, readPngText } from '../../lib'
import { preconditionNoise } from '../../lib/scheduler/edm-config'
import { GOLDEN, TINY, goldenCases, readGolden, relativeError, maxAbsDiff } from '../support/helpers'

let pipe: Pipeline
test.before(async () => { pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' }) })
test.after.always(async () => { await pipe?.dispose() })

const img2img = goldenCases().img2img
const golden = readGolden('img2img.safetensors')
for (const strength of img2img.strengths as number[]) {
  test.serial(`img2img at strength ${strength}: the timesteps diffusers runs and the image within 1 level`, async t => {
    const sigmas: number[] = []
    const r = await pipe.generate(img2img.prompt, {
      image: path.join(GOLDEN, img2img.input), strength, steps: img2img.steps, guidanceScale: img2img.guidance, seed: img2img.seed,
      onStep: s => sigmas.push(s.sigma)
    })
    const key = `strength${strength.toFixed(1)}`
    t.deepEqual(sigmas.map(preconditionNoise), Array.from(golden[`${key}.timesteps_run`].data))
    const ref8 = golden[`${key}.image`].data.map(x => Math.round(Math.min(1, Math.max(0, x)) * 255))
    t.is(r.images[0].width, 128)
    t.true(maxAbsDiff(r.images[0].data, ref8) <= 1, `max diff ${maxAbsDiff(r.images[0].data, ref8)}`)
  })
}

test.serial('img2img takes a path, encoded bytes or raw RGB alike, and validates its options', async t => {
  const file = path.join(GOLDEN, img2img.input)
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true })
  const opts = { steps: 4, strength: 0.5, seed: 3, outputType: 'latent' as const }
  const a = await pipe.generate('a cat', { ...opts, image: file })
  const b = await pipe.generate('a cat', { ...opts, image: await sharp(file).png().toBuffer() })
  const c = await pipe.generate('a cat', { ...opts, image: { width: info.width, height: info.height, data: new Uint8Array(data) } })
  t.deepEqual(a.latents, b.latents)
  t.deepEqual(a.latents, c.latents)
  const resized = await pipe.generate('a cat', { ...opts, image: file, width: 64, height: 96 })
  t.is(resized.latents!.length, 4 * 8 * 12)
  const bad: Array<[object, RegExp]> = [
    [{ image: file, strength: 0 }, /strength must be in \(0, 1\]/],
    [{ image: file, strength: 1.5 }, /strength must be in/],
    [{ strength: 0.5 }, /strength needs an image/],
    [{ image: file, steps: 2, strength: 0.3 }, /steps x strength must be at least 1/],
    [{ image: file, latents: new Float32Array(1024) }, /cannot be combined/]
  ]
  for (const [o, re] of bad) {
    const e = await t.throwsAsync(pipe.generate('a cat', o))
    t.is((e as Pg25Error).code, 'PG25_INVALID_ARGUMENT')
    t.regex(e.message, re)
  }
  const e = await t.throwsAsync(pipe.generate('a cat', { image: Buffer.from('not an image'), steps: 2, strength: 1 }))
  t.is((e as Pg25Error).code, 'PG25_INVALID_ARGUMENT')
  t.regex(e.message, /image: cannot decode/)
})

test.serial('count: n images in one batch, noise drawn for the batch from one generator as diffusers draws it', async t => {
  const r = await pipe.generate('a photo of a cat', { count: 3, steps: 3, width: 64, height: 64, seed: 9, outputType: 'latent' })
  t.is(r.latents!.length, 3 * 4 * 8 * 8)
  // The batch's noise is one randn(3x4x8x8) draw; passing that draw as latents must give the same result.
  const same = await pipe.generate('a photo of a cat', { count: 3, steps: 3, width: 64, height: 64, latents: new TorchGenerator(9).randn([3, 4, 8, 8]), outputType: 'latent' })
  t.deepEqual(r.latents, same.latents)
  // Each image equals the same prompt run alone from its slice of that noise.
  const noise = new TorchGenerator(9).randn([3, 4, 8, 8])
  for (const k of [0, 2]) {
    const one = await pipe.generate('a photo of a cat', { steps: 3, width: 64, height: 64, latents: noise.slice(k * 256, (k + 1) * 256), outputType: 'latent' })
    t.true(relativeError(r.latents!.slice(k * 256, (k + 1) * 256), one.latents!) < 1e-5, `image ${k}`)
  }
  const imgs = await pipe.generate('a photo of a cat', { count: 2, steps: 2, width: 64, height: 64, seed: 9, negativePrompt: 'blurry' })
  t.is(imgs.images.length, 2)
  t.notDeepEqual(imgs.images[0].data, imgs.images[1].data)
  await t.throwsAsync(pipe.generate('x', { count: 0 }), { message: /count must be an integer/ })
})

test.serial('previews: a small RGB image per image at every step, from the backend', async t => {
  const seen: Array<{ step: number, w: number, h: number, len: number }> = []
  let last: Uint8Array | undefined
  await pipe.generate('a cat', { count: 2, steps: 3, width: 64, height: 96, seed: 1, preview: true, onStep: s => {
    t.is(s.previews!.length, 2)
    const p = s.previews![0]
    seen.push({ step: s.step, w: p.width, h: p.height, len: p.data.length })
    last = p.data
  } })
  t.deepEqual(seen, [1, 2, 3].map(step => ({ step, w: 8, h: 12, len: 8 * 12 * 3 })))
  t.true(new Set(last).size > 4, 'the preview is not flat')
  await pipe.generate('a cat', { steps: 1, width: 64, height: 64, onStep: s => { t.is(s.previews, undefined) } })
})

test.serial('PNG output carries the generation parameters, A1111 style; metadata: false leaves them out', async t => {
  const r = await pipe.generate('a photo of a cat, 東京', { negativePrompt: 'blurry', steps: 2, width: 64, height: 64, seed: 77, guidanceScale: 3 })
  const png = await r.images[0].toPNG()
  const text = readPngText(png)
  t.is(text.parameters, r.images[0].parameters)
  t.regex(text.parameters, /^a photo of a cat, 東京\nNegative prompt: blurry\nSteps: 2, Sampler: DPM\+\+ 2M Karras, CFG scale: 3, Seed: 77, Size: 64x64, Version: @pg25\/native$/)
  const meta = await sharp(png).metadata()
  t.is(meta.width, 64)
  const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true })
  t.deepEqual(new Uint8Array(data), r.images[0].data)
  const plain = await r.images[0].toPNG({ metadata: false })
  t.deepEqual(readPngText(plain), {})
})

test.serial('memory() reports what the backend holds, and it drops after dispose', async t => {
  const p = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  const m = p.memory()
  t.true(m.host > 4_000_000, `${m.host}`) // the tiny model's weights in float32
  t.is(m.device, 0)
  t.true(m.rss > m.host)
  await p.dispose()
  t.is(p.memory().host, 0)
})

test('loading refuses up front when the model cannot fit, naming the numbers', async t => {
  const e = await t.throwsAsync(Pipeline.fromPretrained(TINY, { device: 'cpu', memoryLimit: 1_000_000, precision: 'fp32' }))
  t.is((e as Pg25Error).code, 'PG25_OUT_OF_MEMORY')
  t.regex(e.message, /needs about 0\.0\d GiB on the cpu \(\d+\.\dM parameters at 4 bytes plus .* working memory\) but memoryLimit allows 0\.00 GiB/)
  // 'auto' (the default) tries half-width weights first, then refuses at their size.
  const half = await t.throwsAsync(Pipeline.fromPretrained(TINY, { device: 'cpu', memoryLimit: 1_000_000, onWarning: () => {} }))
  t.regex(half.message, /parameters at 2 bytes plus .* but memoryLimit allows 0\.00 GiB/)
  await t.throwsAsync(Pipeline.fromPretrained(TINY, { device: 'cpu', memoryLimit: -1 }), { message: /memoryLimit must be a positive number/ })
  const ok = await Pipeline.fromPretrained(TINY, { device: 'cpu', memoryLimit: 1e9 })
  await ok.dispose()
})
