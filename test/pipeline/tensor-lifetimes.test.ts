// Every device tensor a run makes is freed when the run ends, however it ends: the backend's bytes in
// use return to what the loaded model holds after each kind of call.
import test from 'ava'
import path from 'node:path'
import { AbortError, Pipeline } from '../../lib'
import { GOLDEN, TINY, goldenCases } from '../support/helpers'

let pipe: Pipeline
test.before(async () => { pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' }) })
test.after.always(async () => { await pipe?.dispose() })

const base = { width: 64, height: 64, steps: 3, seed: 5 }

test.serial('generate frees every tensor it made: guided, previews, batches, latents, img2img, inpainting, aborted', async t => {
  const image = path.join(GOLDEN, goldenCases().img2img.input)
  const mask = { width: 128, height: 128, data: new Uint8Array(128 * 128 * 3).map((_, i) => (i % (128 * 3) < 64 * 3 ? 255 : 0)) }
  // The VAE encoder loads on first use: one image-to-image call first, so that the baseline includes it.
  await pipe.generate('a cat', { ...base, image, strength: 0.5 })
  const held = pipe.memory().host
  t.true(held > 0)
  const calls: Array<[string, () => Promise<unknown>]> = [
    ['guided with previews', async () => await pipe.generate('a cat', { ...base, guidanceScale: 3, preview: true, onStep: () => {} })],
    ['unguided', async () => await pipe.generate('a cat', { ...base, guidanceScale: 1 })],
    ['a batch of 2 as latents', async () => await pipe.generate('a cat', { ...base, count: 2, outputType: 'latent' })],
    ['img2img', async () => await pipe.generate('a cat', { ...base, image, strength: 0.6 })],
    ['inpainting', async () => await pipe.generate('a cat', { ...base, image, mask, strength: 1 })],
    ['encodePrompt', async () => await pipe.encodePrompt('a cat', { negativePrompt: 'a dog' })]
  ]
  for (const [what, call] of calls) {
    await call()
    t.is(pipe.memory().host, held, what)
  }
  const ac = new AbortController()
  await t.throwsAsync(pipe.generate('a cat', { ...base, steps: 6, signal: ac.signal, onStep: s => { if (s.step === 2) ac.abort() } }),
    { instanceOf: AbortError })
  t.is(pipe.memory().host, held, 'aborted after two steps')
})
