// Inpainting with the model's own 4-channel UNet, as diffusers' StableDiffusionXLInpaintPipeline runs
// it: the mask (white = repaint) goes to the latent grid, and after every step the area to keep is
// replaced by the encoded image noised to the next step's sigma (the plain encoded image after the
// last step), so only the masked area is generated while it stays consistent with its surroundings.
import { Pg25Error } from './errors'
import { loadImage, probeImage, type ImageInput } from './image'
import type { NativeTensor } from './native'
import type { TorchGenerator } from './random/torch-generator'
import { release, type Runtime } from './runtime'

/** What inpainting needs of the scheduler: its sigmas and its starting noise scale. */
interface Sigmas { sigmas: ArrayLike<number>, initNoiseSigma: number }

/**
 * Checks a `mask` option against the input image from both headers, before any work: a mask needs an
 * image, and the image's exact size. Returns the mask input to decode later.
 */
export async function probeMask (mask: ImageInput, image: { width: number, height: number } | undefined): Promise<ImageInput> {
  if (image === undefined) throw new Pg25Error('PG25_INVALID_ARGUMENT', 'mask needs an image: inpainting repaints the white area of the mask in `image`')
  const probed = await probeImage(mask, 'mask')
  if (probed.width !== image.width || probed.height !== image.height) {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `mask is ${probed.width}x${probed.height}; it must have the image's size, ${image.width}x${image.height}`)
  }
  return probed.input
}

export class Inpainting {
  private imageLatents: Float32Array = new Float32Array(0)
  private noise: Float32Array = new Float32Array(0)

  /** `mask`: 1 where the latent cell is repainted, 0 where it is kept, [h * w] */
  private constructor (readonly mask: Float32Array, private readonly steps: number) {}

  /**
   * Decodes the mask at the output size (`width` x `height`, resized as the image is when they differ),
   * to grey as PIL's convert('L') weighs RGB, binarized at one half (diffusers' mask processor), then
   * sampled at the top-left pixel of each 8x8 block (torch's 'nearest' interpolation to H/8 x W/8).
   */
  static async load (input: ImageInput, width: number, height: number, steps: number): Promise<Inpainting> {
    const rgb = await loadImage(input, { width, height }, 'mask')
    const h = height / 8
    const w = width / 8
    const mask = new Float32Array(h * w)
    for (let i = 0; i < h; i++) {
      for (let j = 0; j < w; j++) {
        const p = (8 * i * width + 8 * j) * 3
        const grey = (rgb.data[p] * 19595 + rgb.data[p + 1] * 38470 + rgb.data[p + 2] * 7471 + 0x8000) >> 16
        mask[i * w + j] = grey / 255 >= 0.5 ? 1 : 0
      }
    }
    return new Inpainting(mask, steps)
  }

  /**
   * The latents the loop starts from, given the encoded image (one image's latents, scaled) and the
   * noise (count images): pure noise x the initial sigma at strength 1, else the image noised to the
   * start sigma. Draws from `gen` what diffusers draws after the noise (the masked image's encoder
   * sample, which only a 9-channel inpainting UNet uses), so later draws stay in step.
   */
  start (
    imageLatents: Float32Array, noise: Float32Array, scheduler: Sigmas, tStart: number, strength: number, gen: TorchGenerator,
    latentShape: number[]
  ): Float32Array {
    this.imageLatents = imageLatents
    this.noise = noise
    gen.randn([1, ...latentShape.slice(1)])
    const out = new Float32Array(noise.length)
    if (strength === 1) {
      for (let i = 0; i < out.length; i++) out[i] = noise[i] * scheduler.initNoiseSigma
    } else {
      const sigma = scheduler.sigmas[tStart]
      for (let i = 0; i < out.length; i++) out[i] = imageLatents[i % imageLatents.length] + noise[i] * sigma
    }
    return out
  }

  /** After scheduler step `i` (of the whole schedule): the kept area set back to the image at the next sigma. */
  blend (rt: Runtime, x: NativeTensor, i: number, scheduler: Sigmas): NativeTensor {
    const xs = rt.toHost(x)
    const last = i + 1 >= this.steps
    const sigma = last ? 0 : scheduler.sigmas[i + 1]
    const cells = this.mask.length
    const per = this.imageLatents.length
    for (let e = 0; e < xs.length; e++) {
      if (this.mask[e % cells] === 1) continue
      const image = this.imageLatents[e % per]
      xs[e] = last ? image : image + this.noise[e] * sigma
    }
    const out = rt.fromHost(xs, x.shape)
    release(x)
    return out
  }
}
