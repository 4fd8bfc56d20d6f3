// Inpainting on the CUDA backend, run in the CPU emulation of CUDA: the golden inpaint inputs at 2
// steps against the CPU backend (relative 2e-2, the float16 stage tolerance of ../shared/README.md),
// the kept latent cells on the encoded image.
import test from 'ava'
import path from 'node:path'
import { Pipeline } from '../../lib'
import { GOLDEN, TINY, readGolden, relativeError } from '../support/helpers'
import { emulationReport } from '../support/emulation'

const DIR = path.join(GOLDEN, 'inpaint')

test('inpainting in emulated CUDA matches the CPU backend', async t => {
  const opts = { image: path.join(DIR, 'input.png'), mask: path.join(DIR, 'mask.png'), strength: 1, steps: 2, guidanceScale: 3, seed: 42, outputType: 'latent' as const }
  const cpu = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  const gpu = await Pipeline.fromPretrained(TINY, { device: 'cuda', onWarning: () => {} })
  const [a, b] = [await cpu.generate('a photo of a cat', opts), await gpu.generate('a photo of a cat', opts)]
  const err = relativeError(b.latents!, a.latents!)
  t.true(err <= 2e-2, `latents: ${err}`)
  const g = readGolden(path.join(DIR, 'inpaint_s1.0.safetensors'))
  const keep = g.mask_latent.data
  const kept = (x: Float32Array): number[] => Array.from(x).filter((_, e) => keep[e % keep.length] === 0)
  const keptErr = relativeError(kept(b.latents!), kept(g.image_latents.data))
  t.true(keptErr <= 2e-2, `kept cells: ${keptErr}`)
  await cpu.dispose()
  await gpu.dispose()
  t.deepEqual(emulationReport().misuse, [])
})
