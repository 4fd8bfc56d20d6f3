import path from 'node:path'
import { randomInt } from 'node:crypto'
import { Pg25Error, throwIfAborted } from './errors'
import { makeImage, type GeneratedImage } from './image'
import { readModelIndex, requireComponent, resolveComponent, type ComponentSource, type ModelIndex } from './model/model-dir'
import { readJsonObject } from './model/files'
import { TextEncoderModel, UNetModel, VAEModel } from './models'
import type { NativeTensor } from './native'
import { TorchGenerator } from './random/torch-generator'
import { release, Runtime, type Device } from './runtime'
import { createScheduler, type SchedulerName } from './scheduler'
import type { RawConfig } from './scheduler/edm-config'
import { CLIPTokenizer } from './tokenizer/clip-tokenizer'

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
}

export interface Size { width: number, height: number }

export interface StepInfo {
  /** steps done so far, 1-based */
  step: number
  steps: number
  /** the noise level just stepped from */
  sigma: number
}

export interface GenerateOptions {
  negativePrompt?: string
  /** prompt for the second text encoder (default: `prompt`) */
  prompt2?: string
  negativePrompt2?: string
  /** multiples of 8; default: the UNet's sample size x 8 (1024 for Playground v2.5) */
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
  /** initial noise (1 x 4 x H/8 x W/8, NCHW) instead of the seeded draw; scaled by the scheduler's init sigma */
  latents?: Float32Array
  /** 'latent' returns `latents` and skips the VAE */
  outputType?: 'image' | 'latent'
  originalSize?: Size
  cropTopLeft?: { top: number, left: number }
  targetSize?: Size
  onStep?: (info: StepInfo) => void
  signal?: AbortSignal
}

export interface GenerateResult {
  seed: number
  images: GeneratedImage[]
  /** the denoised latents before decoding (outputType 'latent'), 1 x 4 x H/8 x W/8 */
  latents?: Float32Array
  width: number
  height: number
}

const DEFAULT_STEPS = 50
const DEFAULT_GUIDANCE = 3

/**
 * Playground v2.5 text-to-image: diffusers' StableDiffusionXLPipeline, step for step.
 *
 * ```ts
 * import { Pipeline } from '@pg25/native'
 * await using pipe = await Pipeline.fromPretrained('./playground-v2.5-1024px-aesthetic', { variant: 'fp16' })
 * const { images, seed } = await pipe.generate('a cat in a spacesuit', { steps: 30, seed: 42 })
 * await fs.writeFile('cat.png', await images[0].toPNG())
 * ```
 */
export class Pipeline {
  readonly dir: string
  private readonly rt: Runtime
  private readonly index: ModelIndex
  private readonly schedulerConfig: RawConfig
  private readonly schedulerSource: string
  private readonly tokenizers: [CLIPTokenizer, CLIPTokenizer]
  private readonly encoders: [TextEncoderModel, TextEncoderModel]
  private readonly unet: UNetModel
  private readonly vae: VAEModel
  private readonly warn: (msg: string) => void
  private queue: Promise<unknown> = Promise.resolve()
  private disposed = false

  private constructor (init: {
    dir: string, rt: Runtime, index: ModelIndex, schedulerConfig: RawConfig, schedulerSource: string,
    tokenizers: [CLIPTokenizer, CLIPTokenizer], encoders: [TextEncoderModel, TextEncoderModel], unet: UNetModel, vae: VAEModel, warn: (msg: string) => void
  }) {
    this.dir = init.dir
    this.rt = init.rt
    this.index = init.index
    this.schedulerConfig = init.schedulerConfig
    this.schedulerSource = init.schedulerSource
    this.tokenizers = init.tokenizers
    this.encoders = init.encoders
    this.unet = init.unet
    this.vae = init.vae
    this.warn = init.warn
  }

  /**
   * Loads a diffusers-format model directory (model_index.json and its component folders).
   *
   * ```ts
   * const pipe = await Pipeline.fromPretrained(dir, { device: 'cpu', onProgress: p => console.log(p.component) })
   * ```
   */
  static async fromPretrained (dir: string, options: LoadOptions = {}): Promise<Pipeline> {
    if (typeof dir !== 'string' || dir === '') throw new Pg25Error('PG25_INVALID_ARGUMENT', 'fromPretrained needs a model directory path')
    const { signal, onProgress } = options
    if (options.variant !== undefined && options.variant !== 'fp16') throw new Pg25Error('PG25_INVALID_ARGUMENT', `variant must be 'fp16', got ${JSON.stringify(options.variant)}`)
    const warn = options.onWarning ?? ((msg: string) => process.emitWarning(msg, { code: 'PG25_NOTICE' }))
    throwIfAborted(signal)
    const root = path.resolve(dir)
    const index = await readModelIndex(root)
    const variant = options.variant ?? null
    const schedulerSource = path.join(root, 'scheduler', 'scheduler_config.json')
    requireComponent(index, 'scheduler')
    const schedulerConfig = await readJsonObject(schedulerSource, 'the scheduler config')
    createScheduler(schedulerConfig, schedulerSource) // refuse an unsupported scheduler before loading weights
    for (const name of ['tokenizer', 'tokenizer_2']) {
      const [, cls] = requireComponent(index, name)
      if (cls !== 'CLIPTokenizer' && cls !== 'CLIPTokenizerFast') throw new Pg25Error('PG25_UNSUPPORTED', `${index.file}: tokenizer class "${cls}" is not supported (CLIPTokenizer)`)
    }
    const tokenizers = await Promise.all([
      CLIPTokenizer.fromPretrained(path.join(root, 'tokenizer')),
      CLIPTokenizer.fromPretrained(path.join(root, 'tokenizer_2'))
    ]) as [CLIPTokenizer, CLIPTokenizer]
    const names = ['text_encoder', 'text_encoder_2', 'unet', 'vae'] as const
    const sources: ComponentSource[] = []
    for (const n of names) sources.push(await resolveComponent(root, index, n, variant, warn))
    throwIfAborted(signal)

    const rt = Runtime.open(options.device ?? 'auto', warn)
    try {
      const step = async <T>(i: number, load: () => Promise<T>): Promise<T> => {
        throwIfAborted(signal)
        onProgress?.({ component: names[i], loaded: i, total: names.length })
        return await load()
      }
      const te1 = await step(0, async () => await TextEncoderModel.load(rt, sources[0]))
      const te2 = await step(1, async () => await TextEncoderModel.load(rt, sources[1]))
      const unet = await step(2, async () => await UNetModel.load(rt, sources[2]))
      const vae = await step(3, async () => await VAEModel.load(rt, sources[3]))
      throwIfAborted(signal)
      onProgress?.({ component: 'done', loaded: names.length, total: names.length })
      if (te1.hiddenSize + te2.hiddenSize !== unet.info.crossAttentionDim) {
        throw new Pg25Error('PG25_BAD_CONFIG', `${sources[2].configPath}: cross_attention_dim ${unet.info.crossAttentionDim} differs from the text encoders' ${te1.hiddenSize} + ${te2.hiddenSize}`)
      }
      return new Pipeline({ dir: root, rt, index, schedulerConfig, schedulerSource, tokenizers, encoders: [te1, te2], unet, vae, warn })
    } catch (err) {
      rt.dispose()
      throw err
    }
  }

  /** 'cpu' or 'cuda': where this pipeline runs. */
  get device (): string {
    return this.rt.device
  }

  /** The default image size: the UNet's sample size times the VAE's scale factor. */
  get defaultSize (): Size {
    const s = this.unet.info.sampleSize * this.vae.scaleFactor
    return { width: s, height: s }
  }

  /**
   * Generates images from a prompt. Calls on one pipeline run one at a time, in order.
   *
   * ```ts
   * const r = await pipe.generate('a lighthouse at dusk', { negativePrompt: 'blurry', seed: 7, onStep: s => console.log(s.step) })
   * ```
   */
  async generate (prompt: string, options: GenerateOptions = {}): Promise<GenerateResult> {
    const plan = this.validate(prompt, options)
    const run = this.queue.then(async () => await this.run(prompt, options, plan))
    this.queue = run.catch(() => {})
    return await run
  }

  private validate (prompt: string, o: GenerateOptions): { width: number, height: number, steps: number, guidance: number, seed: number } {
    const bad = (msg: string): never => { throw new Pg25Error('PG25_INVALID_ARGUMENT', msg) }
    if (this.disposed) throw new Pg25Error('PG25_DISPOSED', 'generate() called after dispose()')
    if (typeof prompt !== 'string') bad('prompt must be a string')
    if (o === null || typeof o !== 'object') bad('options must be an object')
    for (const k of ['negativePrompt', 'prompt2', 'negativePrompt2'] as const) {
      if (o[k] !== undefined && typeof o[k] !== 'string') bad(`${k} must be a string`)
    }
    const def = this.defaultSize
    const width = o.width ?? def.width
    const height = o.height ?? def.height
    for (const [k, v] of [['width', width], ['height', height]] as const) {
      if (!Number.isInteger(v) || v < 8 || v > 8192 || v % 8 !== 0) bad(`${k} must be a multiple of 8 between 8 and 8192, got ${v}`)
    }
    const steps = o.steps ?? DEFAULT_STEPS
    if (!Number.isInteger(steps) || steps < 1 || steps > 1000) bad(`steps must be an integer from 1 to 1000, got ${steps}`)
    const guidance = o.guidanceScale ?? DEFAULT_GUIDANCE
    if (typeof guidance !== 'number' || !Number.isFinite(guidance) || guidance < 0) bad(`guidanceScale must be a finite number >= 0, got ${guidance}`)
    if (o.scheduler !== undefined && o.scheduler !== 'dpmpp-2m' && o.scheduler !== 'euler') bad(`scheduler must be 'dpmpp-2m' or 'euler', got ${JSON.stringify(o.scheduler)}`)
    if (o.outputType !== undefined && o.outputType !== 'image' && o.outputType !== 'latent') bad(`outputType must be 'image' or 'latent', got ${JSON.stringify(o.outputType)}`)
    if (o.seed !== undefined && (!Number.isSafeInteger(o.seed) || o.seed < 0)) bad(`seed must be a non-negative safe integer, got ${o.seed}`)
    const latentCount = this.unet.info.inChannels * (height / 8) * (width / 8)
    if (o.latents !== undefined) {
      if (!(o.latents instanceof Float32Array)) bad('latents must be a Float32Array')
      if (o.latents!.length !== latentCount) bad(`latents must hold 1x${this.unet.info.inChannels}x${height / 8}x${width / 8} = ${latentCount} values, got ${o.latents!.length}`)
    }
    for (const [k, s] of [['originalSize', o.originalSize], ['targetSize', o.targetSize]] as const) {
      if (s !== undefined && (typeof s !== 'object' || !Number.isInteger(s.width) || !Number.isInteger(s.height) || s.width < 1 || s.height < 1)) bad(`${k} must be { width, height } in positive integers`)
    }
    if (o.cropTopLeft !== undefined && (typeof o.cropTopLeft !== 'object' || !Number.isInteger(o.cropTopLeft.top) || !Number.isInteger(o.cropTopLeft.left) || o.cropTopLeft.top < 0 || o.cropTopLeft.left < 0)) bad('cropTopLeft must be { top, left } in non-negative integers')
    if (o.onStep !== undefined && typeof o.onStep !== 'function') bad('onStep must be a function')
    if (o.signal !== undefined && !(o.signal instanceof AbortSignal)) bad('signal must be an AbortSignal')
    const seed = o.seed ?? randomInt(0, 2 ** 32)
    return { width, height, steps, guidance, seed }
  }

  private tokenize (which: 0 | 1, text: string): number[] {
    const { ids, truncated } = this.tokenizers[which].encodeWithInfo(text)
    if (truncated !== null) {
      this.warn(`The following part of your input was truncated because CLIP can only handle sequences up to ${this.tokenizers[which].maxLength} tokens: ${JSON.stringify(truncated)}`)
    }
    return ids
  }

  /**
   * Both text encoders on [negative?, prompt]: embeddings [B, 77, 2048] and pooled [B, 1280], with
   * zeros for the negative half when no negative prompt is given (force_zeros_for_empty_prompt).
   */
  private async encodePrompts (prompt: string, o: GenerateOptions, cfg: boolean): Promise<{ embeds: NativeTensor, pooled: NativeTensor }> {
    const zeroNegative = cfg && o.negativePrompt === undefined && this.index.forceZerosForEmptyPrompt
    const texts1 = [prompt]
    const texts2 = [o.prompt2 ?? prompt]
    if (cfg && !zeroNegative) {
      const neg = o.negativePrompt ?? ''
      texts1.unshift(neg)
      texts2.unshift(o.negativePrompt2 ?? neg)
    }
    const [a, b] = await Promise.all([
      this.encoders[0].encode(texts1.map(t => this.tokenize(0, t))),
      this.encoders[1].encode(texts2.map(t => this.tokenize(1, t)))
    ])
    let embeds: NativeTensor | undefined
    let pooled: NativeTensor | undefined = b.pooled
    try {
      embeds = this.rt.call(() => this.rt.engine.concat(a.penultimate, b.penultimate, -1))
      if (zeroNegative) {
        const zeros = (t: NativeTensor): NativeTensor => this.rt.fromHost(new Float32Array(t.shape.reduce((x, y) => x * y, 1)), t.shape)
        const ze = zeros(embeds)
        const zp = zeros(pooled!)
        const e2 = this.rt.call(() => this.rt.engine.concat(ze, embeds!, 0))
        const p2 = this.rt.call(() => this.rt.engine.concat(zp, pooled!, 0))
        release(ze, zp, embeds, pooled)
        embeds = e2
        pooled = p2
      }
      return { embeds, pooled: pooled! }
    } finally {
      release(a.penultimate, b.penultimate)
    }
  }

  private async run (prompt: string, o: GenerateOptions, plan: { width: number, height: number, steps: number, guidance: number, seed: number }): Promise<GenerateResult> {
    if (this.disposed) throw new Pg25Error('PG25_DISPOSED', 'the pipeline was disposed before this call ran')
    const { signal } = o
    throwIfAborted(signal)
    const { width, height, steps, guidance, seed } = plan
    const cfg = guidance > 1
    const scheduler = createScheduler(this.schedulerConfig, this.schedulerSource, o.scheduler)
    scheduler.setTimesteps(steps)
    const ops = this.rt.ops
    const latentShape = [1, this.unet.info.inChannels, height / 8, width / 8]
    const held: Array<NativeTensor | undefined> = []
    try {
      const { embeds, pooled } = await this.encodePrompts(prompt, o, cfg)
      held.push(embeds, pooled)
      const orig = o.originalSize ?? { width, height }
      const target = o.targetSize ?? { width, height }
      const crop = o.cropTopLeft ?? { top: 0, left: 0 }
      const ids = [orig.height, orig.width, crop.top, crop.left, target.height, target.width]
      const timeIds = Float32Array.from(cfg ? [...ids, ...ids] : ids)

      const noise = o.latents ?? new TorchGenerator(seed).randn(latentShape)
      const noiseT = this.rt.fromHost(noise, latentShape)
      let x = ops.lincomb([[scheduler.initNoiseSigma, noiseT]])
      noiseT.dispose()
      try {
        for (let i = 0; i < steps; i++) {
          throwIfAborted(signal)
          if (this.disposed) throw new Pg25Error('PG25_DISPOSED', 'the pipeline was disposed during this call')
          const scaled = scheduler.scaleModelInput(ops, x, i)
          const input = cfg ? this.rt.call(() => this.rt.engine.concat(scaled, scaled, 0)) : scaled
          const out = await this.unet.predict(input, scheduler.timesteps[i], embeds, pooled, timeIds)
          let eps = out
          if (cfg) {
            const uncond = this.rt.call(() => this.rt.engine.slice0(out, 0, 1))
            const cond = this.rt.call(() => this.rt.engine.slice0(out, 1, 1))
            eps = ops.lincomb([[1 - guidance, uncond], [guidance, cond]])
            release(uncond, cond, out, input)
          }
          const next = scheduler.step(ops, eps, i, x)
          release(scaled, eps, x)
          x = next
          o.onStep?.({ step: i + 1, steps, sigma: scheduler.sigmas[i] })
        }
        throwIfAborted(signal)
        if (o.outputType === 'latent') return { seed, images: [], latents: this.rt.toHost(x), width, height }
        const image = await this.vae.decode(x)
        try {
          const data = await this.vae.toRGB8(image)
          return { seed, images: [makeImage(width, height, data)], width, height }
        } finally {
          image.dispose()
        }
      } finally {
        scheduler.reset(ops)
        x.dispose()
      }
    } finally {
      release(...held)
    }
  }

  /** Frees the model's memory now. Pending generate() calls reject with PG25_DISPOSED. */
  async dispose (): Promise<void> {
    if (this.disposed) return
    this.disposed = true
    await this.queue
    this.rt.dispose()
  }

  async [Symbol.asyncDispose] (): Promise<void> {
    await this.dispose()
  }
}
