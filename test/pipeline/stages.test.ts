import test from 'ava'
import path from 'node:path'
import { CLIPTokenizer, Runtime, TextEncoderModel, UNetModel, VAEModel, VAEEncoderModel, readModelIndex, resolveComponent } from '../../lib'
import { TINY, goldenCases, goldenUnet, readGolden, relativeError } from '../support/helpers'

// Each network on the CPU backend against diffusers/transformers in float32 (relative 1e-4).
const TOL = 1e-4

async function setup (): Promise<{ rt: Runtime, te1: TextEncoderModel, te2: TextEncoderModel, unet: UNetModel, vae: VAEModel }> {
  const rt = Runtime.open('cpu', () => {})
  const index = await readModelIndex(TINY)
  const src = async (n: string): Promise<any> => await resolveComponent(TINY, index, n, null, () => {})
  return {
    rt,
    te1: await TextEncoderModel.load(rt, await src('text_encoder')),
    te2: await TextEncoderModel.load(rt, await src('text_encoder_2')),
    unet: await UNetModel.load(rt, await src('unet')),
    vae: await VAEModel.load(rt, await src('vae'))
  }
}

test('text encoders: penultimate states, pooled projection and concatenated embeddings', async t => {
  const { rt, te1, te2 } = await setup()
  const tok1 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'))
  const tok2 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer_2'))
  const g = readGolden('text_encoders.safetensors')
  const prompts = goldenCases().text_encoders.prompts as string[]
  for (const [i, p] of prompts.entries()) {
    const a = await te1.encode([tok1.encode(p)])
    const b = await te2.encode([tok2.encode(p)])
    const cat = rt.engine.concat(a.penultimate, b.penultimate, -1)
    for (const [name, ours] of [['te1_penultimate', a.penultimate], ['te2_penultimate', b.penultimate], ['te2_text_embeds', b.pooled!], ['prompt_embeds', cat]] as const) {
      const ref = g[`p${i}.${name}`]
      t.deepEqual(ours.shape, ref.shape, `p${i}.${name} shape`)
      const err = relativeError(rt.toHost(ours), ref.data)
      t.true(err <= TOL, `p${i}.${name}: ${err}`)
    }
  }
  rt.dispose()
})

test('unet: one batch-2 call as classifier-free guidance runs it', async t => {
  const { rt, unet } = await setup()
  const { shape, expected, err } = await goldenUnet(rt, unet)
  t.deepEqual(shape, expected)
  t.true(err <= TOL, `unet: ${err}`)
  rt.dispose()
})

test('vae: one decode', async t => {
  const { rt, vae } = await setup()
  const g = readGolden('vae.safetensors')
  const img = await vae.decode(rt.fromHost(g.latent.data, g.latent.shape), false)
  t.deepEqual(img.shape, g.image.shape)
  const err = relativeError(rt.toHost(img), g.image.data)
  t.true(err <= TOL, `vae: ${err}`)
  rt.dispose()
})

test('vae encoder: latent distribution mean and std', async t => {
  const rt = Runtime.open('cpu', () => {})
  const enc = await VAEEncoderModel.load(rt, await resolveComponent(TINY, await readModelIndex(TINY), 'vae', null, () => {}))
  const g = readGolden('vae_encoder.safetensors')
  const { mean, std } = await enc.encode(rt.fromHost(g.image.data, g.image.shape))
  t.deepEqual(mean.shape, g.mean.shape)
  for (const [name, ours] of [['mean', mean], ['std', std]] as const) {
    const err = relativeError(rt.toHost(ours), g[name].data)
    t.true(err <= TOL, `${name}: ${err}`)
  }
  rt.dispose()
})

test('unet inputs of the wrong shape are refused with a clear error, not a crash', async t => {
  const { rt, unet } = await setup()
  const g = readGolden('unet.safetensors')
  const e = await t.throwsAsync(unet.predict(rt.fromHost(new Float32Array(2 * 3 * 16 * 16), [2, 3, 16, 16]), 0.2,
    rt.fromHost(g.encoder_hidden_states.data, g.encoder_hidden_states.shape),
    rt.fromHost(g.text_embeds.data, g.text_embeds.shape), g.time_ids.data))
  t.is((e as any).code, 'PG25_INVALID_ARGUMENT')
  t.regex(e.message, /sample must be \[B, 4, h, w\]/)
  rt.dispose()
})

test('synthetic weights: any graph from its config alone, deterministic per seed', async t => {
  const rt = Runtime.open('cpu', () => {})
  const src = await resolveComponent(TINY, await readModelIndex(TINY), 'unet', null, () => {})
  const a = await UNetModel.load(rt, src, 7)
  const b = await UNetModel.load(rt, src, 7)
  const c = await UNetModel.load(rt, src, 8)
  const g = readGolden('unet.safetensors')
  const run = async (m: UNetModel): Promise<Float32Array> => rt.toHost(await m.predict(rt.fromHost(g.sample.data, g.sample.shape), 0.5,
    rt.fromHost(g.encoder_hidden_states.data, g.encoder_hidden_states.shape),
    rt.fromHost(g.text_embeds.data, g.text_embeds.shape), g.time_ids.data))
  const [ya, yb, yc] = [await run(a), await run(b), await run(c)]
  t.deepEqual(ya, yb)
  t.true(relativeError(ya, yc) > 0.1)
  t.true(ya.every(Number.isFinite))
  rt.dispose()
})
