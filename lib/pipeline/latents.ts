import { loadImage, type ImageInput } from '../image'
import type { Inpainting } from '../inpaint'
import type { VAEEncoderModel, VAEModel } from '../model/components'
import type { NativeTensor } from '../native'
import type { GenerateOptions, Plan } from '../options'
import type { TorchGenerator } from '../random/torch-generator'
import { release, type Runtime } from '../runtime'
import type { Scheduler } from '../scheduler'

/** What preparing the start latents needs from the pipeline. */
export interface LatentSource {
  rt: Runtime
  channels: number
  vae: VAEModel
  /** the VAE encoder, loaded on first use (text-to-image never needs it) */
  vaeEncoder: () => Promise<VAEEncoderModel>
}

export interface StartLatents { x: NativeTensor, width: number, height: number, tStart: number }

/**
 * diffusers' prepare_latents: seeded noise x init sigma; or, for image-to-image, the encoded image noised
 * to the start sigma (inpainting: the masked start). The caller frees `x`.
 */
export async function prepareLatents (src: LatentSource, o: GenerateOptions, plan: Plan, scheduler: Scheduler, gen: TorchGenerator,
  signal: AbortSignal, inpaint?: Inpainting): Promise<StartLatents> {
  const { rt, channels } = src
  const { steps, count: n } = plan
  if (o.image !== undefined) {
    const enc = await encodeImage(src, o.image, plan.width!, plan.height!, gen, signal)
    const tStart = steps - Math.min(Math.trunc(steps * plan.strength), steps)
    const shape = [n, channels, enc.height / 8, enc.width / 8]
    const noise = gen.randn(shape)
    let start: Float32Array
    if (inpaint !== undefined) {
      start = inpaint.start(enc.init, noise, scheduler, tStart, plan.strength, gen, shape)
    } else {
      const sigma = scheduler.sigmas[tStart]
      start = new Float32Array(noise.length)
      for (let i = 0; i < start.length; i++) start[i] = enc.init[i % enc.init.length] + noise[i] * sigma
    }
    return { x: rt.fromHost(start, shape), width: enc.width, height: enc.height, tStart }
  }
  const width = plan.width!
  const height = plan.height!
  const shape = [n, channels, height / 8, width / 8]
  const noise = rt.fromHost(o.latents ?? gen.randn(shape), shape)
  try {
    return { x: rt.ops.lincomb([[scheduler.initNoiseSigma, noise]]), width, height, tStart: 0 }
  } finally {
    noise.dispose()
  }
}

/** The image-to-image start: the VAE-encoded input, sampled with the generator, in UNet latent space. */
async function encodeImage (src: LatentSource, image: ImageInput, w: number, h: number, gen: TorchGenerator, signal: AbortSignal):
Promise<{ init: Float32Array, width: number, height: number }> {
  const { rt } = src
  let rgb = await loadImage(image)
  if (w !== rgb.width || h !== rgb.height) rgb = await loadImage(rgb, { width: w, height: h })
  const px = new Float32Array(3 * w * h)
  for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) px[c * w * h + i] = (rgb.data[i * 3 + c] / 255) * 2 - 1
  const encoder = await src.vaeEncoder()
  const imgT = rt.fromHost(px, [1, 3, h, w])
  const { mean, std } = await encoder.encode(imgT, signal).finally(() => imgT.dispose())
  const shape = mean.shape
  let m: Float32Array, sd: Float32Array
  try {
    m = rt.toHost(mean)
    sd = rt.toHost(std)
  } finally {
    release(mean, std)
  }
  // latent_dist.sample(generator): drawn before the noise, from the same generator.
  const eps = gen.randn(shape)
  // diffusers 0.27.2 (the version the model card names) scales encoded latents by scaling_factor
  // alone; latents_mean/std are applied only when decoding. Matching it keeps seeds equal.
  const { scalingFactor } = src.vae.stats
  const init = new Float32Array(m.length)
  for (let i = 0; i < init.length; i++) init[i] = (m[i] + sd[i] * eps[i]) * scalingFactor
  return { init, width: w, height: h }
}
