import test from 'ava'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { Pipeline, Pg25Error } from '../../lib'
import { createServer } from '../../lib/server'
import { Inpainting } from '../../lib/inpaint'
import { GOLDEN, TINY, declaredPng, maxAbsDiff, readGolden, relativeError } from '../support/helpers'

// StableDiffusionXLInpaintPipeline (diffusers 0.36) on tiny-pg25 with its 4-channel UNet: golden/inpaint.
const DIR = path.join(GOLDEN, 'inpaint')
const IMAGE = path.join(DIR, 'input.png')
const MASK = path.join(DIR, 'mask.png')
const RUN = { image: IMAGE, mask: MASK, strength: 1, steps: 8, guidanceScale: 3, seed: 42 }

let pipe: Pipeline
test.before(async () => { pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' }) })
test.after.always(async () => { await pipe?.dispose() })

const g = readGolden(path.join(DIR, 'inpaint_s1.0.safetensors'))
const golden8 = Array.from(g.image.data, x => Math.round(Math.min(1, Math.max(0, x)) * 255))

/** The largest difference from the golden encoded image over the latent cells the mask keeps, for each image of a batch. */
function keptDiff (latents: Float32Array, mask: Float32Array): number {
  const per = g.image_latents.data.length
  let d = 0
  for (let e = 0; e < latents.length; e++) {
    if (mask[e % mask.length] === 0) d = Math.max(d, Math.abs(latents[e] - g.image_latents.data[e % per]))
  }
  return d
}

test.serial('the mask reaches the latent grid as diffusers samples it (the top-left pixel of each 8x8 block)', async t => {
  const m = await Inpainting.load(MASK, 128, 128, 8)
  t.deepEqual(Array.from(m.mask), Array.from(g.mask_latent.data))
})

test.serial('the golden inpaint case: latents within 1e-3 and the 8-bit image within 1 level of diffusers', async t => {
  const lat = await pipe.generate('a photo of a cat', { ...RUN, outputType: 'latent' })
  const err = relativeError(lat.latents!, g.latents.data)
  t.true(err <= 1e-3, `latents: ${err}`)
  const r = await pipe.generate('a photo of a cat', RUN)
  const d = maxAbsDiff(r.images[0].data, golden8)
  t.true(d <= 1, `image: ${d} levels`)
  t.regex(r.images[0].parameters, /Denoising strength: 1/)
})

test.serial('the masked-out region keeps the encoded input; only the masked region follows the prompt', async t => {
  const mask = g.mask_latent.data
  const a = await pipe.generate('a photo of a cat', { ...RUN, steps: 4, outputType: 'latent' })
  const b = await pipe.generate('a bowl of soup', { ...RUN, steps: 4, outputType: 'latent' })
  t.true(keptDiff(a.latents!, mask) <= 1e-4, `kept cells differ from the encoded image by ${keptDiff(a.latents!, mask)}`)
  let keptEqual = true
  let repaintDiff = 0
  for (let e = 0; e < a.latents!.length; e++) {
    if (mask[e % mask.length] === 0) keptEqual &&= a.latents![e] === b.latents![e]
    else repaintDiff = Math.max(repaintDiff, Math.abs(a.latents![e] - b.latents![e]))
  }
  t.true(keptEqual)
  t.true(repaintDiff > 1e-2, `the prompt changes the repainted area (${repaintDiff})`)
  // strength < 1 starts from the noised image and still ends on it outside the mask, for each image of a batch.
  const c = await pipe.generate('a photo of a cat', { ...RUN, strength: 0.5, count: 2, outputType: 'latent' })
  t.true(keptDiff(c.latents!, mask) <= 1e-4)
})

test.serial('without a strength, inpainting runs at diffusers\' inpainting default, 0.9999 (7 of 8 steps)', async t => {
  const steps: number[] = []
  const r = await pipe.generate('a photo of a cat', { image: IMAGE, mask: MASK, steps: 8, seed: 42, onStep: s => steps.push(s.steps) })
  t.deepEqual(steps, Array(7).fill(7))
  t.regex(r.images[0].parameters, /Denoising strength: 0.9999/)
})

test.serial('refusals before any work: a mask of another size, a mask without an image, a mask that is not an image', async t => {
  const reject = async (options: object, message: RegExp): Promise<void> => {
    const err = await t.throwsAsync(pipe.generate('x', { steps: 4, ...options }), { instanceOf: Pg25Error, message })
    t.is(err?.code, 'PG25_INVALID_ARGUMENT')
  }
  await reject({ image: IMAGE, mask: declaredPng(64, 128) }, /mask is 64x128; it must have the image's size, 128x128/)
  await reject({ mask: MASK }, /mask needs an image/)
  await reject({ image: IMAGE, mask: Buffer.from('not an image') }, /mask: cannot decode/)
})

test.serial('the server takes a base64 mask with the image; the CLI takes --mask', async t => {
  const server = createServer(pipe)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as any).port}/generate`
  const b64 = (f: string): string => readFileSync(f).toString('base64')
  const body = { prompt: 'a photo of a cat', ...RUN, image: b64(IMAGE), mask: b64(MASK) }
  try {
    const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    t.is(r.status, 200)
    const { data } = await sharp(Buffer.from(await r.arrayBuffer())).raw().toBuffer({ resolveWithObject: true })
    t.true(maxAbsDiff(data, golden8) <= 1)
    const bad = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, mask: 'not base64!' }) })
    t.is(bad.status, 400)
  } finally {
    await server.shutdown(1000)
  }
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'pg25-inpaint-'))
  try {
    const out = path.join(tmp, 'out.png')
    const cli = path.join(__dirname, '..', '..', 'lib', 'cli', 'index.js')
    await promisify(execFile)(process.execPath, [cli, 'a photo of a cat', '--model', TINY, '--device', 'cpu', '--image', IMAGE, '--mask', MASK, '--strength', '1',
      '--steps', '8', '--guidance', '3', '--seed', '42', '-o', out, '-q'])
    const { data } = await sharp(readFileSync(out)).raw().toBuffer({ resolveWithObject: true })
    t.true(maxAbsDiff(data, golden8) <= 1)
  } finally {
    rmSync(tmp, { recursive: true, force: true })
  }
})
