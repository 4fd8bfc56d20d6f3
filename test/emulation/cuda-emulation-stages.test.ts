// The CUDA backend (fp16 storage, fp32 arithmetic), run in the CPU emulation of CUDA, against what
// diffusers computes: every golden stage within the float16 tolerance of ../shared/README.md (relative
// 2e-2), and whole pipelines at PSNR >= 35 dB against the golden images.
import test from 'ava'
import path from 'node:path'
import { CLIPTokenizer, Pipeline, Runtime, TextEncoderModel, UNetModel, VAEModel, VAEEncoderModel, readModelIndex, resolveComponent } from '../../lib'
import { TINY, goldenCases, goldenUnet, readGolden, relativeError } from '../support/helpers'
import { emulationReport, psnr } from '../support/emulation'

const TOL = 2e-2

async function component (name: string): Promise<any> {
  return await resolveComponent(TINY, await readModelIndex(TINY), name, null, () => {})
}

test.serial('text encoders in emulated CUDA: penultimate states, pooled projection, prompt embeddings', async t => {
  const rt = Runtime.open('cuda', () => {})
  const te1 = await TextEncoderModel.load(rt, await component('text_encoder'))
  const te2 = await TextEncoderModel.load(rt, await component('text_encoder_2'))
  const tok1 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'))
  const tok2 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer_2'))
  const g = readGolden('text_encoders.safetensors')
  for (const [i, p] of (goldenCases().text_encoders.prompts as string[]).entries()) {
    // Both encoders at once, as generate() runs them: two threads in one engine.
    const [a, b] = await Promise.all([te1.encode([tok1.encode(p)]), te2.encode([tok2.encode(p)])])
    const cat = rt.engine.concat(a.penultimate, b.penultimate, -1)
    for (const [name, ours] of [['te1_penultimate', a.penultimate], ['te2_penultimate', b.penultimate], ['te2_text_embeds', b.pooled!], ['prompt_embeds', cat]] as const) {
      const err = relativeError(rt.toHost(ours), g[`p${i}.${name}`].data)
      t.true(err <= TOL, `p${i}.${name}: ${err}`)
    }
  }
  rt.dispose()
})

test.serial('unet in emulated CUDA: one batch-2 call', async t => {
  const rt = Runtime.open('cuda', () => {})
  const unet = await UNetModel.load(rt, await component('unet'))
  const { shape, expected, err } = await goldenUnet(rt, unet)
  t.deepEqual(shape, expected)
  t.true(err <= TOL, `unet: ${err}`)
  rt.dispose()
})

test.serial('vae decoder and encoder in emulated CUDA', async t => {
  const rt = Runtime.open('cuda', () => {})
  const vae = await VAEModel.load(rt, await component('vae'))
  const g = readGolden('vae.safetensors')
  const img = await vae.decode(rt.fromHost(g.latent.data, g.latent.shape), false)
  const err = relativeError(rt.toHost(img), g.image.data)
  t.true(err <= TOL, `vae decode: ${err}`)
  const enc = await VAEEncoderModel.load(rt, await component('vae'))
  const ge = readGolden('vae_encoder.safetensors')
  const { mean, std } = await enc.encode(rt.fromHost(ge.image.data, ge.image.shape))
  for (const [name, ours] of [['mean', mean], ['std', std]] as const) {
    const e = relativeError(rt.toHost(ours), ge[name].data)
    t.true(e <= TOL, `vae encode ${name}: ${e}`)
  }
  rt.dispose()
})

const to8 = (x: Float32Array): number[] => Array.from(x, v => Math.round(Math.min(1, Math.max(0, v)) * 255))

let gpu: Pipeline
test.before(async () => { gpu = await Pipeline.fromPretrained(TINY, { device: 'cuda', onWarning: () => {} }) })

for (const c of goldenCases().pipeline as any[]) {
  test.serial(`${c.file} in emulated CUDA: the image at PSNR >= 35 dB against diffusers`, async t => {
    const g = readGolden(c.file)
    const r = await gpu.generate(c.prompt, {
      negativePrompt: c.negative ?? undefined, steps: c.steps, guidanceScale: c.guidance, width: c.w, height: c.h, seed: c.seed
    })
    const db = psnr(r.images[0].data, to8(g.image.data))
    t.true(db >= 35, `${c.file}: ${db.toFixed(1)} dB`)
  })
}

test.serial('the Euler scheduler in emulated CUDA matches the CPU backend at PSNR >= 35 dB', async t => {
  const cpu = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  const opts = { steps: 4, scheduler: 'euler' as const, width: 128, height: 96, seed: 11 }
  const [a, b] = [await cpu.generate('a red fox in the snow', opts), await gpu.generate('a red fox in the snow', opts)]
  const db = psnr(b.images[0].data, a.images[0].data)
  t.true(db >= 35, `euler: ${db.toFixed(1)} dB`)
  await cpu.dispose()
})

test.after.always('the emulation saw no misuse of CUDA', async t => {
  await gpu?.dispose()
  t.deepEqual(emulationReport().misuse, [])
})
