// generate()'s run as diffusers' StableDiffusionXLPipeline names its steps: encode the prompt, prepare
// the latents, add the time ids, then denoise (the UNet, guidance, the scheduler's step) and decode.
// Each step's device tensors live in a TensorScope: they are freed when their block ends.
import { Pg25Error, throwIfAborted } from '../errors'
import { makeImage, type RGBImage } from '../image'
import { Inpainting } from '../inpaint'
import type { LoRAs } from '../lora/lora'
import type { TextEncoderModel, UNetModel } from '../model/components'
import type { NativeTensor } from '../native'
import type { GenerateOptions, GenerateResult, Plan } from '../options'
import { encodePlain } from '../prompt/plain'
import { encodeStyled } from '../prompt/conditioning'
import type { PromptPlan } from '../prompt/plan'
import { TorchGenerator } from '../random/torch-generator'
import type { Runtime } from '../runtime'
import { createScheduler, type Scheduler } from '../scheduler'
import type { RawConfig } from '../scheduler/edm-config'
import { TensorScope } from '../tensor-scope'
import { prepareLatents, type LatentSource } from './latents'
import { parametersText } from './parameters'
import { previewImages, previewMatrix, type PreviewMatrix } from './preview'

/** What a run reads from its pipeline. */
export interface RunModels extends LatentSource {
  encoders: [TextEncoderModel, TextEncoderModel]
  unet: UNetModel
  lora: LoRAs
  schedulerConfig: RawConfig
  schedulerSource: string
  modelName: string | undefined
  warn: (message: string) => void
  /** true once the pipeline is disposed: the loop stops at the next step */
  disposed: () => boolean
}

/**
 * One generate() call, checked and planned. `pageIdle`: page each component's weights out once its
 * part of the run is over (offload), so that the next phase has their room.
 */
export interface RunRequest { prompt: string, options: GenerateOptions, plan: Plan, prompts: PromptPlan, pageIdle: boolean }

/**
 * Both text encoders: embeddings [B, tokens, 2048] and pooled [B, 1280] for B = count (no guidance) or
 * 2 x count laid out [negative x count, prompt x count]. Without a negative prompt the negative half
 * is zeros (force_zeros_for_empty_prompt). 'plain' prompts stay on the device as diffusers' do.
 */
export async function encodePrompt (m: Pick<RunModels, 'rt' | 'encoders'>, prompts: PromptPlan, cfg: boolean, count: number,
  signal: AbortSignal): Promise<{ embeds: NativeTensor, pooled: NativeTensor }> {
  if (prompts.style !== 'plain') return await encodeStyled(m.rt, m.encoders, prompts, cfg, count, signal)
  return await encodePlain(m.rt, m.encoders, prompts, cfg, count, signal)
}

/** SDXL's add_time_ids (original size, crop, target size), one row per UNet batch row. */
export function addTimeIds (o: GenerateOptions, width: number, height: number, rows: number): Float32Array {
  const orig = o.originalSize ?? { width, height }
  const target = o.targetSize ?? { width, height }
  const crop = o.cropTopLeft ?? { top: 0, left: 0 }
  const ids = [orig.height, orig.width, crop.top, crop.left, target.height, target.width]
  return Float32Array.from(Array.from({ length: rows }, () => ids).flat())
}

/**
 * Classifier-free guidance: uncond + g (cond - uncond) over the UNet output's halves, read in place
 * (views on the GPU). Without guidance the output is the prediction. The result lives in `scope`.
 */
export function guide (rt: Runtime, scope: TensorScope, out: NativeTensor, count: number, guidance: number): NativeTensor {
  if (guidance <= 1) return out
  const uncond = scope.hold(rt.call(() => rt.engine.slice0(out, 0, count)))
  const cond = scope.hold(rt.call(() => rt.engine.slice0(out, count, count)))
  return scope.hold(rt.ops.lincomb([[1 - guidance, uncond], [guidance, cond]]))
}

/** The run: from a checked request to images (or latents). */
export async function runSteps (m: RunModels, r: RunRequest, signal: AbortSignal): Promise<GenerateResult> {
  throwIfAborted(signal)
  const { options: o, plan } = r
  const scheduler = createScheduler(m.schedulerConfig, m.schedulerSource, o.scheduler)
  scheduler.setTimesteps(plan.steps)
  try {
    using scope = new TensorScope()
    await m.lora.apply(o.loras)
    const inpaint = o.mask === undefined ? undefined : await Inpainting.load(o.mask, plan.width!, plan.height!, plan.steps)
    const start = await prepareLatents(m, o, plan, scheduler, new TorchGenerator(plan.seed), signal, inpaint)
    const x0 = scope.hold(start.x)
    const cond = await encodePrompt(m, r.prompts, plan.guidance > 1, plan.count, signal)
    scope.hold(cond.embeds)
    scope.hold(cond.pooled)
    if (r.pageIdle) for (const e of m.encoders) await e.pageOut()
    const rows = (plan.guidance > 1 ? 2 : 1) * plan.count
    const timeIds = addTimeIds(o, start.width, start.height, rows)
    const x = await denoise(m, r, scope, { ...start, x: x0, scheduler, inpaint, timeIds, ...cond }, signal)
    if (r.pageIdle) await m.unet.pageOut()
    return await decode(m, r, scope, x, start.width, start.height, scheduler, signal)
  } finally {
    scheduler.reset(m.rt.ops)
  }
}

interface DenoiseState {
  x: NativeTensor
  width: number
  height: number
  tStart: number
  scheduler: Scheduler
  inpaint: Inpainting | undefined
  embeds: NativeTensor
  pooled: NativeTensor
  timeIds: Float32Array
}

/** The denoising loop: returns the final latents, held in `scope`. */
async function denoise (m: RunModels, r: RunRequest, scope: TensorScope, s: DenoiseState, signal: AbortSignal): Promise<NativeTensor> {
  const { options: o, plan } = r
  const { rt } = m
  const { scheduler, inpaint } = s
  const preview = o.preview === true ? previewOf(m) : null
  let x = s.x
  for (let i = s.tStart; i < plan.steps; i++) {
    throwIfAborted(signal)
    if (m.disposed()) throw new Pg25Error('PG25_DISPOSED', 'the pipeline was disposed during this call')
    using step = new TensorScope()
    // With guidance the UNet takes the one latent for both halves of the conditioning (no concatenated copy).
    const scaled = step.hold(scheduler.scaleModelInput(rt.ops, x, i))
    const out = step.hold(await m.unet.predict(scaled, scheduler.timesteps[i], s.embeds, s.pooled, s.timeIds, signal))
    step.free(scaled)
    const eps = guide(rt, step, out, plan.count, plan.guidance)
    let previews: RGBImage[] | undefined
    if (preview) previews = previewImages(rt, step.hold(scheduler.denoised(rt.ops, eps, i, x)), preview, s.width, s.height, plan.count)
    const next = scheduler.step(rt.ops, eps, i, x)
    x = scope.replace(x, inpaint === undefined ? next : inpaint.blend(rt, next, i, scheduler))
    o.onStep?.({ step: i - s.tStart + 1, steps: plan.steps - s.tStart, sigma: scheduler.sigmas[i], previews })
  }
  throwIfAborted(signal)
  return x
}

/** Previews need the SDXL VAE's 4 latent channels; another model says once per call that it has none. */
function previewOf (m: RunModels): PreviewMatrix | null {
  const matrix = previewMatrix(m.channels, m.vae.stats)
  if (matrix === null) m.warn(`preview: no previews for a ${m.channels}-channel latent (the preview factors are the SDXL VAE's, for 4 channels)`)
  return matrix
}

/** Checks the latents, then decodes them with the VAE into images (or returns them: outputType 'latent'). */
async function decode (m: RunModels, r: RunRequest, scope: TensorScope, x: NativeTensor, width: number, height: number,
  scheduler: Scheduler, signal: AbortSignal): Promise<GenerateResult> {
  const { options: o, plan } = r
  const { seed, count: n } = plan
  const latents = m.rt.toHost(x)
  for (const v of latents) {
    if (!Number.isFinite(v)) {
      throw new Pg25Error('PG25_NON_FINITE', `the run produced NaN or infinite latents (${width}x${height}, ${plan.steps} steps, ` +
        `guidance ${plan.guidance}); no image is returned: the model's weights may be broken`)
    }
  }
  const warnings = r.prompts.warnings
  if (o.outputType === 'latent') return { seed, images: [], latents, width, height, warnings }
  const image = scope.hold(await m.vae.decode(x, true, signal))
  const data = await m.vae.toRGB8(image)
  const per = width * height * 3
  const run = { scheduler: scheduler.name, width, height, modelName: m.modelName }
  const images = Array.from({ length: n }, (_, k) => makeImage(width, height, data.subarray(k * per, (k + 1) * per),
    parametersText(r.prompt, o, plan, { ...run, index: k })))
  return { seed, images, width, height, warnings }
}
