// Long and weighted prompts on the CUDA backend (fp16 storage), in the CPU emulation of CUDA: the
// embeddings within the float16 tolerance (relative 2e-2) of the references' code, and the UNet's
// cross-attention over N x 77 tokens through CUDA graphs, recorded per context length.
import test from 'ava'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { Pipeline } from '../../lib/pipeline'
import { TINY, relativeError } from '../support/helpers'
import { emulationReport, psnr } from '../support/emulation'

const TOL = 2e-2
const fixture = JSON.parse(readFileSync(path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'prompt-styles.json'), 'utf8'))
const f32 = (b64: string): Float32Array => {
  const b = Buffer.from(b64, 'base64')
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))
}

let gpu: Pipeline
test.before(async () => { gpu = await Pipeline.fromPretrained(TINY, { device: 'cuda', onWarning: () => {} }) })

for (const style of ['a1111', 'comfy'] as const) {
  test.serial(`${style} in emulated CUDA: weighted and long prompts' embeddings within 2e-2 of the reference`, async t => {
    const dim = 64
    const names = ['weights', 'nesting', 'tokens-78', 'tokens-300', 'break', 'prompt2-differs']
    for (const c of (fixture[style] as any[]).filter(x => names.includes(x.name))) {
      const r = await gpu.encodePrompt(c.prompt, { promptStyle: style, prompt2: c.prompt2, guidanceScale: 1 })
      t.is(r.tokens, c.tokens)
      const ours = new Float32Array(r.tokens * dim / fixture.stride)
      const kept = dim / fixture.stride
      for (let i = 0; i < ours.length; i++) ours[i] = r.embeds[Math.floor(i / kept) * dim + (i % kept) * fixture.stride]
      const err = relativeError(ours, f32(c.embeds))
      t.true(err <= TOL, `${c.name}: ${err}`)
      t.true(relativeError(r.pooled, f32(c.pooled)) <= TOL, `${c.name}: pooled`)
    }
  })
}

test.serial('a 154-token prompt after a 77-token one: its own CUDA graph, the image of diffusers fed A1111\'s embeddings', async t => {
  const c = fixture.pipeline
  const opts = { negativePrompt: c.negative, steps: c.steps, guidanceScale: c.guidance, width: c.width, height: c.height, seed: c.seed }
  // The short prompt's run records its graph (from its second UNet call) at these latents' shape.
  await gpu.generate('a cat', opts)
  emulationReport(true)
  const r = await gpu.generate(c.prompt, opts)
  const ref = Buffer.from(c.image, 'base64')
  const db = psnr(r.images[0].data, ref)
  t.true(db >= 35, `${db.toFixed(1)} dB`)
  // Again: now replayed from the 154-token recording.
  const again = await gpu.generate(c.prompt, opts)
  t.deepEqual(again.images[0].data, r.images[0].data)
  t.deepEqual(emulationReport().misuse, [])
})

test.after.always('the emulation saw no misuse of CUDA', async t => {
  await gpu?.dispose()
  const r = emulationReport()
  t.deepEqual(r.misuse, [])
})
