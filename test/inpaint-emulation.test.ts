// Inpainting on the CUDA backend, run in the CPU emulation of CUDA: the golden inpaint inputs at 3
// steps against the CPU backend (PSNR >= 35 dB, the float16 pipeline tolerance of ../shared/README.md),
// the kept latent cells on the encoded image in both.
import test from 'ava'
import path from 'node:path'
import { Pipeline } from '../lib'
import { GOLDEN, TINY, readGolden, relativeError } from './helpers'
import { emulationReport, psnr } from './emulation'

const DIR = path.join(GOLDEN, 'inpaint')

test('inpainting in emulated CUDA matches the CPU backend', async t => {
  const opts = { image: path.join(DIR, 'input.png'), mask: path.join(DIR, 'mask.png'), strength: 1, steps: 3, guidanceScale: 3, seed: 42 }
  const cpu = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  const gpu = await Pipeline.fromPretrained(TINY, { device: 'cuda', onWarning: () => {} })
  const [a, b] = [await cpu.generate('a photo of a cat', opts), await gpu.generate('a photo of a cat', opts)]
  const db = psnr(b.images[0].data, a.images[0].data)
  t.true(db >= 35, `${db.toFixed(1)} dB`)
  const g = readGolden(path.join(DIR, 'inpaint_s1.0.safetensors'))
  const lat = await gpu.generate('a photo of a cat', { ...opts, outputType: 'latent' })
  const keep = g.mask_latent.data
  const kept = (x: Float32Array): number[] => Array.from(x).filter((_, e) => keep[e % keep.length] === 0)
  const err = relativeError(kept(lat.latents!), kept(g.image_latents.data))
  t.true(err <= 2e-2, `kept cells: ${err}`)
  await cpu.dispose()
  await gpu.dispose()
  t.deepEqual(emulationReport().misuse, [])
})
