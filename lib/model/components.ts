// The pipeline's three networks as components on a Runtime: host arrays or backend tensors in,
// backend tensors out. Useful alone for users who want the parts.
import { withCancel } from '../cancel'
import { Pg25Error, native } from '../errors'
import type { ComponentSource } from './model-dir'
import type { CancelToken, ComponentInfo, NativeEngine, NativeTensor } from '../native'
import type { Runtime } from '../runtime'

/** Runs one native model call; `signal` aborting stops it between blocks with an AbortError. */
async function cancellable<T> (
  rt: Runtime, signal: AbortSignal | undefined, fn: (e: NativeEngine, token: CancelToken | undefined) => Promise<T>
): Promise<T> {
  return await withCancel(signal, async token => await native(async () => await rt.call(() => fn(rt.engine, token))))
}

/** Component `id`'s weights paged out to the backend's scratch file (read back by its next call). */
async function pageOut (rt: Runtime, id: number): Promise<boolean> {
  return await native(async () => await rt.call(() => rt.engine.pageOut(id)))
}

/** Component `id`'s info, which must be of `kind`. */
function infoOf<K extends ComponentInfo['kind']> (rt: Runtime, id: number, kind: K): Extract<ComponentInfo, { kind: K }> {
  const info = rt.call(() => rt.engine.componentInfo(id))
  if (info.kind !== kind) throw new Pg25Error('PG25_INTERNAL', `component ${id} is a ${info.kind}, not a ${kind}`)
  return info as Extract<ComponentInfo, { kind: K }>
}

/** A CLIP text encoder: ids -> penultimate hidden states (and the pooled projection for encoder 2). */
export class TextEncoderModel {
  /** `id`: the component's number in the runtime's engine (LoRA merging addresses it) */
  private constructor (private readonly rt: Runtime, readonly id: number, readonly hiddenSize: number) {}
  /** Whether the weights wait in the scratch file (pageOut) until the next call reads them back. */
  paged = false

  static async load (
    rt: Runtime, src: ComponentSource, syntheticSeed?: number, onBytes?: (bytes: number) => void
  ): Promise<TextEncoderModel> {
    const id = await rt.load('text_encoder', src, syntheticSeed, onBytes)
    return new TextEncoderModel(rt, id, infoOf(rt, id, 'text_encoder').hiddenSize)
  }

  /** Moves the weights out of memory until the next call reads them back (false where they stay: CUDA). */
  async pageOut (): Promise<boolean> {
    this.paged = await pageOut(this.rt, this.id)
    return this.paged
  }

  /** `ids`: batch x 77 token ids, row-major. */
  async encode (ids: number[][], signal?: AbortSignal): Promise<{ penultimate: NativeTensor, pooled?: NativeTensor }> {
    const flat = Int32Array.from(ids.flat())
    this.paged = false
    return await cancellable(this.rt, signal, async (c, token) => await c.encodeText(this.id, flat, ids.length, token))
  }
}

export class UNetModel {
  /** `id`: the component's number in the runtime's engine (LoRA merging addresses it) */
  private constructor (
    private readonly rt: Runtime,
    readonly id: number,
    readonly info: { inChannels: number, sampleSize: number, crossAttentionDim: number, textEmbedsDim: number }
  ) {}

  static async load (rt: Runtime, src: ComponentSource, syntheticSeed?: number, onBytes?: (bytes: number) => void): Promise<UNetModel> {
    const id = await rt.load('unet', src, syntheticSeed, onBytes)
    const { inChannels, sampleSize, crossAttentionDim, textEmbedsDim } = infoOf(rt, id, 'unet')
    return new UNetModel(rt, id, { inChannels, sampleSize, crossAttentionDim, textEmbedsDim })
  }

  /** Whether the weights wait in the scratch file (pageOut) until the next call reads them back. */
  paged = false

  /** Moves the weights out of memory until the next call reads them back (false where they stay: CUDA). */
  async pageOut (): Promise<boolean> {
    this.paged = await pageOut(this.rt, this.id)
    return this.paged
  }

  /**
   * One UNet call: noise prediction [B, C, h, w] at `timestep` (0.25 ln sigma) for `sample` [B, C, h, w],
   * or [B / k, C, h, w] taken k times over, for conditioning of batch B (classifier-free guidance passes
   * one latent for the unconditional and conditional halves).
   */
  async predict (
    sample: NativeTensor, timestep: number, encoderHiddenStates: NativeTensor, textEmbeds: NativeTensor, timeIds: Float32Array,
    signal?: AbortSignal
  ): Promise<NativeTensor> {
    this.paged = false
    const out = await cancellable(this.rt, signal,
      async (c, token) => await c.unet(this.id, sample, timestep, encoderHiddenStates, textEmbeds, timeIds, token))
    this.rt.passNotices()
    return out
  }
}

/** How UNet latents map to VAE latents: z = latents * std / scalingFactor + mean (mean/std may be absent). */
export interface LatentStats { scalingFactor: number, mean: number[] | null, std: number[] | null }

export class VAEModel {
  private constructor (
    private readonly rt: Runtime,
    private readonly id: number,
    readonly latentChannels: number,
    readonly scaleFactor: number,
    readonly stats: LatentStats
  ) {}

  static async load (rt: Runtime, src: ComponentSource, syntheticSeed?: number, onBytes?: (bytes: number) => void): Promise<VAEModel> {
    const id = await rt.load('vae', src, syntheticSeed, onBytes)
    const i = infoOf(rt, id, 'vae')
    const has = i.latentsMean.length > 0
    const stats = { scalingFactor: i.scalingFactor, mean: has ? i.latentsMean : null, std: has ? i.latentsStd : null }
    return new VAEModel(rt, id, i.latentChannels, i.scaleFactor, stats)
  }

  /**
   * Latents -> image tensor in about [-1, 1]. With `fromUNet` (the default) the latents are the UNet's
   * and are first mapped by latents_std / scaling_factor + latents_mean; without it they go to
   * `vae.decode` as they are.
   */
  async decode (latents: NativeTensor, fromUNet = true, signal?: AbortSignal): Promise<NativeTensor> {
    return await cancellable(this.rt, signal, async (c, token) => await c.vaeDecode(this.id, latents, fromUNet, token))
  }

  /** Image tensor -> RGB bytes, round(clamp(x/2+0.5)*255), one image after another. */
  async toRGB8 (image: NativeTensor): Promise<Uint8Array> {
    if (image.shape[1] !== 3) throw new Pg25Error('PG25_INVALID_ARGUMENT', 'image must have 3 channels')
    return await native(async () => await this.rt.call(() => this.rt.engine.toRGB8(image)))
  }
}

/** The VAE encoder (for image-to-image): image in [-1, 1] -> latent distribution mean and std. */
export class VAEEncoderModel {
  private constructor (private readonly rt: Runtime, private readonly id: number) {}

  static async load (rt: Runtime, src: ComponentSource): Promise<VAEEncoderModel> {
    return new VAEEncoderModel(rt, await rt.load('vae_encoder', src))
  }

  async encode (image: NativeTensor, signal?: AbortSignal): Promise<{ mean: NativeTensor, std: NativeTensor }> {
    return await cancellable(this.rt, signal, async (c, token) => await c.vaeEncode(this.id, image, token))
  }
}
