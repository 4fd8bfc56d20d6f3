// The options of loading and generating, and their checks before any work: every numeric option is
// bounded to what the model can use (a 1e308 guidance scale or a 1e300 original size would only make
// NaN images), and messages show the value as given (a string "64" is quoted, not taken for 64).
import { randomInt } from 'node:crypto'
import { Pg25Error } from './errors'
import { MAX_SIDE, type GeneratedImage, type ImageInput, type RGBImage } from './image'
import type { Device } from './runtime'
import type { SchedulerName } from './scheduler'

export interface LoadProgress {
  /** the component being loaded */
  component: string
  /** components loaded so far, of `total` */
  loaded: number
  total: number
}

export interface LoadOptions {
  /** 'auto' (default): the GPU when usable, else the CPU with a notice; 'cpu'; 'cuda' (rejects without a GPU) */
  device?: Device
  /** 'fp16' prefers the `*.fp16.safetensors` files (the default picks plain files, then fp16 ones) */
  variant?: 'fp16'
  signal?: AbortSignal
  onProgress?: (p: LoadProgress) => void
  /** receives notices (CPU fallback, truncated prompts, missing variants); default: process.emitWarning */
  onWarning?: (message: string) => void
  /**
   * The most bytes the model may take (weights plus working memory at the default size). Loading is
   * refused up front, naming both numbers, when the estimate exceeds it. Default: the memory the
   * device has available (for the CPU, the host's available memory).
   *
   * ```ts
   * await Pipeline.fromPretrained(dir, { device: 'cpu', memoryLimit: 8 * 2 ** 30 })
   * ```
   */
  memoryLimit?: number
  /**
   * The model's name for the `Model:` field of PNG parameters (e.g. 'playground-v2.5-1024px-aesthetic').
   * Default: none, so no local folder name reaches images a server sends out.
   */
  modelName?: string
}

export interface Size { width: number, height: number }

export interface StepInfo {
  /** steps done so far, 1-based */
  step: number
  steps: number
  /** the noise level just stepped from */
  sigma: number
  /** with `preview: true`: a small RGB preview (H/8 x W/8) of each image's current estimate */
  previews?: RGBImage[]
}

export interface GenerateOptions {
  negativePrompt?: string
  /** prompt for the second text encoder (default: `prompt`) */
  prompt2?: string
  negativePrompt2?: string
  /** multiples of 8; default: the UNet's sample size x 8 (1024 for Playground v2.5), or the input image's size */
  width?: number
  height?: number
  /** default 50 */
  steps?: number
  /** classifier-free guidance scale; default 3 (the model card's advice); <= 1 turns guidance off */
  guidanceScale?: number
  /** default: the model's scheduler_config.json ('dpmpp-2m' for Playground v2.5) */
  scheduler?: SchedulerName
  /** default: a random seed, returned as `result.seed` */
  seed?: number
  /**
   * Images from one prompt, made in one batched run (default 1). Noise is drawn for the whole batch
   * from one seeded generator, as diffusers draws it, so `seed` reproduces diffusers' batches.
   *
   * ```ts
   * const { images } = await pipe.generate('a fox', { count: 4, seed: 1 })
   * ```
   */
  count?: number
  /** initial noise (count x 4 x H/8 x W/8, NCHW) instead of the seeded draw; scaled by the scheduler's init sigma */
  latents?: Float32Array
  /**
   * Image-to-image: the starting picture (PNG/JPEG bytes, a path, or raw RGB). Its size, rounded down
   * to a multiple of 8, is the default output size.
   *
   * ```ts
   * const r = await pipe.generate('a watercolor of a cat', { image: 'cat.jpg', strength: 0.6 })
   * ```
   */
  image?: ImageInput
  /** with `image`: how much to change it, (0, 1]; default 0.3 (diffusers' default). 1 ignores the image's content. */
  strength?: number
  /** 'latent' returns `latents` and skips the VAE */
  outputType?: 'image' | 'latent'
  originalSize?: Size
  cropTopLeft?: { top: number, left: number }
  targetSize?: Size
  /**
   * Called after each step. With `preview: true` it also gets `previews`: a cheap linear projection of
   * the current estimate to RGB, made on the backend without the VAE.
   *
   * ```ts
   * await pipe.generate('a fox', { preview: true, onStep: ({ step, previews }) => show(step, previews![0]) })
   * ```
   */
  onStep?: (info: StepInfo) => void
  preview?: boolean
  signal?: AbortSignal
}

export interface GenerateResult {
  seed: number
  images: GeneratedImage[]
  /** the denoised latents before decoding (outputType 'latent'), count x 4 x H/8 x W/8 */
  latents?: Float32Array
  width: number
  height: number
}

/** Bytes held by a pipeline: `host` and `device` by its backend (weights and live tensors), `rss` of the process. */
export interface MemoryInfo { host: number, device: number, rss: number }

/** What validation settles: the output size is null until an input image's header is read. */
export interface Plan { width: number | null, height: number | null, steps: number, guidance: number, seed: number, count: number, strength: number }

const DEFAULT_STEPS = 50
const DEFAULT_GUIDANCE = 3
const MAX_STEPS = 1000
const MAX_COUNT = 64
/** Classifier-free guidance past this only saturates the image (ComfyUI's upper bound too). */
const MAX_GUIDANCE = 100
/** SDXL micro-conditioning sizes and crops: twice the largest image is already far off the training data. */
const MAX_CONDITIONING = 2 * MAX_SIDE

/** A value as it should appear in a message: strings quoted, long values cut. */
export function show (v: unknown): string {
  let s: string
  try {
    s = typeof v === 'number' || typeof v === 'bigint' || v === undefined ? String(v) : JSON.stringify(v) ?? String(v)
  } catch {
    s = Object.prototype.toString.call(v)
  }
  return s.length > 60 ? `${s.slice(0, 60)}…` : s
}

/** The options with null values dropped: null means "the default" for every option alike. */
export function withoutNulls (o: GenerateOptions): GenerateOptions {
  if (o === null || typeof o !== 'object') return o
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null)) as GenerateOptions
}

const bad = (msg: string): never => { throw new Pg25Error('PG25_INVALID_ARGUMENT', msg) }

const intIn = (v: unknown, lo: number, hi: number): boolean => Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi

function checkSize (k: string, s: Size | undefined): void {
  if (s !== undefined && (typeof s !== 'object' || s === null || !intIn(s.width, 1, MAX_CONDITIONING) || !intIn(s.height, 1, MAX_CONDITIONING))) {
    bad(`${k} must be { width, height } in integers from 1 to ${MAX_CONDITIONING}, got ${show(s)}`)
  }
}

/** Every option checked, with the defaults filled in. `o` has had its nulls dropped. */
export function validateOptions (prompt: unknown, o: GenerateOptions, model: { defaultSize: Size, latentChannels: number }): Plan {
  if (typeof prompt !== 'string') bad('prompt must be a string')
  if (o === null || typeof o !== 'object') bad('options must be an object')
  for (const k of ['negativePrompt', 'prompt2', 'negativePrompt2'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'string') bad(`${k} must be a string, got ${show(o[k])}`)
  }
  const def = o.image === undefined ? model.defaultSize : null
  const width = o.width ?? def?.width ?? null
  const height = o.height ?? def?.height ?? null
  for (const [k, v] of [['width', width], ['height', height]] as const) {
    if (v !== null && (!intIn(v, 8, MAX_SIDE) || v % 8 !== 0)) bad(`${k} must be a multiple of 8 between 8 and ${MAX_SIDE}, got ${show(v)}`)
  }
  const steps = o.steps ?? DEFAULT_STEPS
  if (!intIn(steps, 1, MAX_STEPS)) bad(`steps must be an integer from 1 to ${MAX_STEPS}, got ${show(steps)}`)
  const guidance = o.guidanceScale ?? DEFAULT_GUIDANCE
  if (typeof guidance !== 'number' || !(guidance >= 0 && guidance <= MAX_GUIDANCE)) bad(`guidanceScale must be a number from 0 to ${MAX_GUIDANCE}, got ${show(guidance)}`)
  if (o.scheduler !== undefined && o.scheduler !== 'dpmpp-2m' && o.scheduler !== 'euler') bad(`scheduler must be 'dpmpp-2m' or 'euler', got ${show(o.scheduler)}`)
  if (o.outputType !== undefined && o.outputType !== 'image' && o.outputType !== 'latent') bad(`outputType must be 'image' or 'latent', got ${show(o.outputType)}`)
  if (o.seed !== undefined && (!Number.isSafeInteger(o.seed) || o.seed < 0)) bad(`seed must be a non-negative safe integer, got ${show(o.seed)}`)
  const count = o.count ?? 1
  if (!intIn(count, 1, MAX_COUNT)) bad(`count must be an integer from 1 to ${MAX_COUNT}, got ${show(count)}`)
  const strength = o.strength ?? 0.3
  if (o.strength !== undefined && o.image === undefined) bad('strength needs an image')
  if (typeof strength !== 'number' || !(strength > 0 && strength <= 1)) bad(`strength must be in (0, 1], got ${show(strength)}`)
  if (o.image !== undefined && Math.min(Math.trunc(steps * strength), steps) < 1) bad(`steps x strength must be at least 1 (${steps} x ${strength} leaves no step to run)`)
  if (o.latents !== undefined) {
    if (o.image !== undefined) bad('latents and image cannot be combined')
    if (!(o.latents instanceof Float32Array)) bad('latents must be a Float32Array')
    const n = count * model.latentChannels * (height! / 8) * (width! / 8)
    if (o.latents!.length !== n) bad(`latents must hold ${count}x${model.latentChannels}x${height! / 8}x${width! / 8} = ${n} values, got ${o.latents!.length}`)
    if (!o.latents!.every(Number.isFinite)) bad('latents must be finite (no NaN or infinity)')
  }
  checkSize('originalSize', o.originalSize)
  checkSize('targetSize', o.targetSize)
  const c = o.cropTopLeft
  if (c !== undefined && (typeof c !== 'object' || c === null || !intIn(c.top, 0, MAX_CONDITIONING) || !intIn(c.left, 0, MAX_CONDITIONING))) {
    bad(`cropTopLeft must be { top, left } in integers from 0 to ${MAX_CONDITIONING}, got ${show(c)}`)
  }
  if (o.onStep !== undefined && typeof o.onStep !== 'function') bad('onStep must be a function')
  if (o.preview !== undefined && typeof o.preview !== 'boolean') bad(`preview must be true or false, got ${show(o.preview)}`)
  if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) bad('signal must be an AbortSignal')
  const seed = o.seed ?? randomInt(0, 2 ** 32)
  return { width, height, steps, guidance, seed, count, strength }
}
