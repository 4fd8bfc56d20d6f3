// gpu-check phase 1, the verdict: the golden stages and pipeline images of tiny-pg25 on the device
// against diffusers, the full-size UNet on the device against the CPU backend, and the headline timings
// at 1024x1024 (text encoders, a UNet call with and without CUDA graphs, a VAE decode, 50 guided steps,
// peak memory) beside PyTorch's same UNet call and VAE decode in this same run.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { Pipeline } from '../../lib/pipeline'
import { Runtime } from '../../lib/runtime'
import { TextEncoderModel, UNetModel, VAEModel } from '../../lib/model/components'
import { CLIPTokenizer } from '../../lib/tokenizer/clip-tokenizer'
import { EDMDPMSolverMultistepScheduler } from '../../lib/scheduler'
import { TorchGenerator } from '../../lib/random/torch-generator'
import { readModelIndex, resolveComponent } from '../../lib/model/model-dir'
import type { NativeTensor } from '../../lib/native'
import { GOLDEN, TINY, readGolden, relativeError } from '../../test/support/helpers'
import { DEVICE, MODEL, RES, SMOKE, cfg, notice, reps, row, timeIds, timeMs } from './common'

const psnr = (a: Uint8Array, b: ArrayLike<number>): number => {
  let se = 0
  for (let i = 0; i < a.length; i++) se += (a[i] - Math.round(Math.min(1, Math.max(0, b[i])) * 255)) ** 2
  return se === 0 ? Infinity : 10 * Math.log10(255 ** 2 / (se / a.length))
}

/** Each golden stage within relative 2e-2 of diffusers, each golden pipeline image at PSNR >= 35 dB. */
export async function golden (): Promise<boolean> {
  let ok = true
  const check = (name: string, e: number): void => { ok &&= e <= 2e-2; row(`golden ${name}`, e.toExponential(2), e <= 2e-2 ? 'pass' : 'FAIL') }
  const rt = Runtime.open(DEVICE, notice)
  const idx = await readModelIndex(TINY)
  const src = async (n: string): Promise<any> => await resolveComponent(TINY, idx, n, null, () => {})
  const te1 = await TextEncoderModel.load(rt, await src('text_encoder'))
  const te2 = await TextEncoderModel.load(rt, await src('text_encoder_2'))
  const unet = await UNetModel.load(rt, await src('unet'))
  const vae = await VAEModel.load(rt, await src('vae'))
  const tok1 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'))
  const tok2 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer_2'))
  const te = readGolden('text_encoders.safetensors')
  const p = 'Astronaut in a jungle, cold color palette, muted colors, detailed, 8k'
  const a = await te1.encode([tok1.encode(p)]); const b = await te2.encode([tok2.encode(p)])
  for (const [name, t] of [['te1_penultimate', a.penultimate], ['te2_penultimate', b.penultimate], ['te2_text_embeds', b.pooled!]] as const) {
    check(name, relativeError(rt.toHost(t), te[`p0.${name}`].data))
  }
  const u = readGolden('unet.safetensors')
  const out = await unet.predict(rt.fromHost(u.sample.data, u.sample.shape), u.timestep.data[0],
    rt.fromHost(u.encoder_hidden_states.data, u.encoder_hidden_states.shape),
    rt.fromHost(u.text_embeds.data, u.text_embeds.shape), u.time_ids.data)
  check('unet', relativeError(rt.toHost(out), u.out.data))
  const v = readGolden('vae.safetensors')
  check('vae', relativeError(rt.toHost(await vae.decode(rt.fromHost(v.latent.data, v.latent.shape), false)), v.image.data))
  rt.dispose()
  const pipe = await Pipeline.fromPretrained(TINY, { device: DEVICE })
  const cases = JSON.parse(readFileSync(path.join(GOLDEN, 'cases.json'), 'utf8')).pipeline
  for (const c of cases) {
    const g = readGolden(c.file)
    const r = await pipe.generate(c.prompt, {
      negativePrompt: c.negative ?? undefined, steps: c.steps, guidanceScale: c.guidance, width: c.w, height: c.h, seed: c.seed
    })
    const db = psnr(r.images[0].data, g.image.data); ok &&= db >= 35
    row(`golden ${c.file} PSNR`, `${db.toFixed(1)} dB`, db >= 35 ? 'pass' : 'FAIL')
  }
  await pipe.dispose()
  return ok
}

/** The full-size UNet (synthetic weights) on the device against the CPU backend at 256x256 (32x32 latents, batch 2). */
export async function gpuVsCpu (): Promise<number | undefined> {
  const gen = new TorchGenerator(5)
  const side = RES / 4 / 8
  const results: Float32Array[] = []
  let sample: Float32Array | undefined, ctx: Float32Array | undefined, pooled: Float32Array | undefined
  for (const dev of DEVICE === 'cuda' ? ['cuda', 'cpu'] as const : ['cpu'] as const) {
    const rt = Runtime.open(dev, notice)
    const unet = await UNetModel.load(rt, cfg('unet'), 1)
    const { crossAttentionDim: cross, textEmbedsDim: pool } = unet.info
    sample ??= gen.randn([2, 4, side, side]); ctx ??= gen.randn([2, 77, cross]).map(x => x * 0.5); pooled ??= gen.randn([2, pool])
    const out = await unet.predict(rt.fromHost(sample, [2, 4, side, side]), 0.8, rt.fromHost(ctx, [2, 77, cross]),
      rt.fromHost(pooled, [2, pool]), timeIds(RES / 4))
    results.push(rt.toHost(out))
    rt.dispose()
  }
  if (results.length < 2) return undefined
  const e = relativeError(results[0], results[1])
  row('full-size UNet, synthetic weights, GPU vs CPU @256', e.toExponential(2), e <= 2e-2 ? 'pass' : 'FAIL')
  return e
}

// The timed calls' inputs: UNet sample, conditioning and pooled embeddings, and VAE latents.
export type Shapes = Record<'x' | 'c' | 'p' | 'z', number[]>
// The same values on every runtime that times them (seeds 1 to 4).
export const modelInputs = (rt: Runtime, s: Shapes): NativeTensor[] =>
  [s.x, s.c, s.p, s.z].map((shape, i) => rt.fromHost(new TorchGenerator(1 + i).randn(shape), shape))
export const shapesFor = (unet: UNetModel): Shapes => {
  const lat = RES / 8
  return { x: [2, 4, lat, lat], c: [2, 77, unet.info.crossAttentionDim], p: [2, unet.info.textEmbedsDim], z: [1, 4, lat, lat] }
}

export interface Headline {
  text_ms: number, unet_step_ms: number, unet_eager_ms: number, vae_ms: number, generate_s: number, peak_gib: number, finite: boolean
}

/** Timings at RES x RES on the device, on synthetic full-size weights. */
export async function headline (): Promise<Headline> {
  const rt = Runtime.open(DEVICE, notice)
  const te1 = await TextEncoderModel.load(rt, cfg('text_encoder'), 2)
  const te2 = await TextEncoderModel.load(rt, cfg('text_encoder_2'), 3)
  const unet = await UNetModel.load(rt, cfg('unet'), 1)
  const vae = await VAEModel.load(rt, cfg('vae'), 4)
  rt.engine.peakBytes(true)
  const tokens = [
    Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i < 12 ? 320 + i : 49407)),
    Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : 49407))
  ]
  const text_ms = await timeMs(async () => {
    const r1 = await te1.encode(tokens); const r2 = await te2.encode(tokens)
    r1.penultimate.dispose(); r2.penultimate.dispose(); r2.pooled?.dispose()
  }, reps(5))
  const shapes = shapesFor(unet)
  const [x, c, p, z] = modelInputs(rt, shapes)
  const tid = timeIds(RES)
  const unet_step_ms = await timeMs(async () => (await unet.predict(x, 0.5, c, p, tid)).dispose(), reps(5))
  let finite = true
  const vae_ms = await timeMs(async () => {
    const img = await vae.decode(z); finite &&= rt.toHost(img).every(Number.isFinite); img.dispose()
  }, reps(3))
  row(`VAE decode at ${RES}x${RES} has no NaN/Inf`, String(finite), finite ? 'pass' : 'FAIL')
  // The generate() loop: prompt encoding, 50 guided DPM++ steps on device tensors, decode, RGB bytes.
  const sched = new EDMDPMSolverMultistepScheduler(JSON.parse(readFileSync(path.join(MODEL, SMOKE ? 'scheduler/scheduler_config.json' : 'scheduler_config.json'), 'utf8')))
  const t0 = performance.now()
  const e1 = await te1.encode(tokens); const e2 = await te2.encode(tokens)
  const embeds = rt.engine.concat(e1.penultimate, e2.penultimate, -1)
  const steps = SMOKE ? 2 : 50
  sched.setTimesteps(steps)
  let xt: NativeTensor = rt.ops.lincomb([[sched.initNoiseSigma, z]])
  for (let i = 0; i < steps; i++) {
    const s = sched.scaleModelInput(rt.ops, xt, i)
    const out = await unet.predict(s, sched.timesteps[i], embeds, e2.pooled!, tid) // one latent for both halves, as generate() passes it
    const eps = rt.ops.lincomb([[-2, rt.engine.slice0(out, 0, 1)], [3, rt.engine.slice0(out, 1, 1)]])
    const next = sched.step(rt.ops, eps, i, xt)
    for (const t of [s, out, eps, xt]) t.dispose()
    xt = next
  }
  await vae.toRGB8(await vae.decode(xt)) // the image bytes on the host end the timed run
  const generate_s = (performance.now() - t0) / 1000
  const peak_gib = rt.engine.peakBytes() / 2 ** 30
  // The same UNet call launched kernel by kernel (no CUDA graph: PG25_CUDA_GRAPHS=0 when a UNet first
  // runs), to show what the recording saves. After the peak is read: this loads a second UNet.
  process.env.PG25_CUDA_GRAPHS = '0'
  const eager = await UNetModel.load(rt, cfg('unet'), 1)
  const unet_eager_ms = await timeMs(async () => (await eager.predict(x, 0.5, c, p, tid)).dispose(), reps(5))
  delete process.env.PG25_CUDA_GRAPHS
  rt.dispose()
  row(`text encoders, batch 2 @${RES}`, `${text_ms.toFixed(2)} ms`)
  row(`UNet call, batch 2, CUDA graph @${RES}`, `${unet_step_ms.toFixed(2)} ms`)
  row(`UNet call, batch 2, kernel by kernel @${RES}`, `${unet_eager_ms.toFixed(2)} ms`)
  row(`VAE decode @${RES}`, `${vae_ms.toFixed(2)} ms`)
  row(`${steps} guided steps end to end @${RES}`, `${generate_s.toFixed(3)} s`)
  row('peak device memory', `${peak_gib.toFixed(2)} GiB`)
  return { text_ms, unet_step_ms, unet_eager_ms, vae_ms, generate_s, peak_gib, finite }
}

/**
 * PyTorch's whole UNet call and VAE decode at the same size (bench/torch_models.py: diffusers' models from
 * the real configs, fp16, channels_last), in this same run. Needs diffusers' source (PG25_DIFFUSERS, which
 * gpu-check.sh run sets from what pack carried); the smoke mode runs them on the CPU.
 */
export function torchModels (): Record<string, number> {
  const out: Record<string, number> = {}
  const src = process.env.PG25_DIFFUSERS
  if (src === undefined) {
    row('pytorch whole-model timings', 'skipped', 'no diffusers source (PG25_DIFFUSERS): see scripts/gpu-check.sh pack')
    return out
  }
  try {
    const text = execFileSync('python3', [path.join(__dirname, '..', '..', '..', 'bench', 'torch_models.py'), MODEL, String(RES / 8), SMOKE ? 'cpu' : 'cuda', String(reps(5))],
      { encoding: 'utf8', timeout: 300_000, env: { ...process.env, PYTHONPATH: src } })
    for (const line of text.trim().split('\n')) { const [name, ms] = line.split('\t'); out[name] = Number(ms) }
  } catch (err) {
    row('pytorch whole-model timings', 'unavailable', String((err as Error).message).split('\n')[0])
  }
  return out
}
