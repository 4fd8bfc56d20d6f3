import path from 'node:path'
import { linkSignals } from './cancel'
import { AbortError, asSignalled, Pg25Error, throwIfAborted } from './errors'
import { loadImage, makeImage, probeImage, type ImageInput, type RGBImage } from './image'
import { Inpainting, probeMask } from './inpaint'
import { requireRegularFile } from './io/regular-file'
import { checkScale, checkScaleOverrides, LoRAs, type LoRAInfo, type LoRALoadOptions } from './lora/lora'
import { resolveLoRASource } from './lora/source'
import { checkRequestMemory, fmtBytes, type CostModel } from './memory'
import { COMPONENTS, loadModels, prepare, type Prepared } from './model/load'
import { readComponentConfig, resolveComponent, type ComponentSource, type ModelIndex } from './model/model-dir'
import { singleFileSources } from './model/single-file'
import { VAEEncoderModel, type TextEncoderModel, type UNetModel, type VAEModel } from './model/components'
import type { NativeTensor } from './native'
import { resolveModelDir } from './hub/resolve'
import { checkLoadOptions, checkLoRAOptions, validateOptions, withoutNulls, type GenerateOptions, type GenerateResult, type LoadOptions, type MemoryInfo, type Plan, type Size } from './options'

export type { GenerateOptions, GenerateResult, LoadOptions, LoadProgress, MemoryInfo, Size, StepInfo } from './options'
export type { PromptStyle } from './prompt/chunk'
import { TorchGenerator } from './random/torch-generator'
import { release, type Runtime } from './runtime'
import { createScheduler, type Scheduler, type SchedulerName } from './scheduler'
import type { RawConfig } from './scheduler/edm-config'
import type { CLIPTokenizer } from './tokenizer/clip-tokenizer'
import type { PromptStyle } from './prompt/chunk'
import { encodeStyled } from './prompt/conditioning'
import { planPrompts, type PromptPlan } from './prompt/plan'
import { encodePlain } from './prompt/plain'

// SDXL latent-to-RGB factors for previews (as used by common UIs), applied to VAE latents x 0.13025.
const SDXL_RGB = [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362], [-0.3165, -0.2492, -0.2188]]
const SDXL_RGB_BIAS = [0.1084, -0.0175, -0.0011]
const SDXL_SCALE = 0.13025
const SAMPLER_LABEL: Record<SchedulerName, string> = { 'dpmpp-2m': 'DPM++ 2M Karras', euler: 'Euler Karras' }

/** encodePrompt's options: generate()'s that settle the conditioning. */
export type EncodePromptOptions = Pick<GenerateOptions, 'negativePrompt' | 'prompt2' | 'negativePrompt2' | 'promptStyle' | 'guidanceScale'>

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
  /** the model's name: its Hub id, or the name of its folder (or single file, without .safetensors) */
  readonly model: string
  private readonly rt: Runtime
  private readonly index: ModelIndex
  private readonly schedulerConfig: RawConfig
  private readonly schedulerSource: string
  private readonly tokenizers: [CLIPTokenizer, CLIPTokenizer]
  private readonly encoders: [TextEncoderModel, TextEncoderModel]
  private readonly unet: UNetModel
  private readonly vae: VAEModel
  private readonly vaeSource: ComponentSource
  private vaeEncoder: Promise<VAEEncoderModel> | undefined
  private readonly warn: (msg: string) => void
  private readonly cost: CostModel
  private readonly memoryLimit: number | undefined
  private readonly modelName: string | undefined
  private readonly promptStyle: PromptStyle
  private queue: Promise<unknown> = Promise.resolve()
  private readonly lora: LoRAs
  private disposed = false
  /** aborted by dispose(), so that a running call stops between blocks instead of finishing its step */
  private readonly closing = new AbortController()

  private constructor (init: {
    dir: string, rt: Runtime, index: ModelIndex, schedulerConfig: RawConfig, schedulerSource: string,
    tokenizers: [CLIPTokenizer, CLIPTokenizer], encoders: [TextEncoderModel, TextEncoderModel], unet: UNetModel, vae: VAEModel, vaeSource: ComponentSource, warn: (msg: string) => void,
    cost: CostModel, memoryLimit: number | undefined, modelName: string | undefined, promptStyle: PromptStyle, model: string
  }) {
    this.dir = init.dir
    this.model = init.model
    this.rt = init.rt
    this.index = init.index
    this.schedulerConfig = init.schedulerConfig
    this.schedulerSource = init.schedulerSource
    this.tokenizers = init.tokenizers
    this.encoders = init.encoders
    this.unet = init.unet
    this.vae = init.vae
    this.vaeSource = init.vaeSource
    this.warn = init.warn
    this.cost = init.cost
    this.memoryLimit = init.memoryLimit
    this.modelName = init.modelName
    this.promptStyle = init.promptStyle
    const ids = { text_encoder: init.encoders[0].id, text_encoder_2: init.encoders[1].id, unet: init.unet.id }
    this.lora = new LoRAs(init.rt, ids, init.memoryLimit)
  }

  /**
   * Loads a diffusers-format model directory (model_index.json and its component folders), or a Hub
   * model id (`org/name`, not an existing path): fetched once into the Hugging Face cache, then loaded from it.
   *
   * ```ts
   * const pipe = await Pipeline.fromPretrained('playgroundai/playground-v2.5-1024px-aesthetic', { variant: 'fp16' })
   * const local = await Pipeline.fromPretrained(dir, { device: 'cpu', onProgress: p => console.log(p.component, p.loadedBytes, p.totalBytes) })
   * ```
   */
  static async fromPretrained (dir: string, options: LoadOptions = {}): Promise<Pipeline> {
    if (typeof dir !== 'string' || dir === '') throw new Pg25Error('PG25_INVALID_ARGUMENT', 'fromPretrained needs a model directory path')
    checkLoadOptions('fromPretrained', options)
    try {
      const root = await resolveModelDir(dir, options) // a Hub id -> its cached snapshot, fetched if needed
      const prep = await prepare(root, options)
      const sources: ComponentSource[] = []
      for (const n of COMPONENTS) sources.push(await resolveComponent(prep.root, prep.index, n, options.variant ?? null, prep.warn))
      return await Pipeline.assemble(prep, sources, options, root === dir ? path.basename(path.resolve(dir)) : dir)
    } catch (err) {
      throw asSignalled(err, options.signal)
    }
  }

  /**
   * Loads a single-file checkpoint (the one `.safetensors` ComfyUI and A1111 users hold: original
   * Stability key names, both text encoders inside, Playground's `edm_mean`/`edm_std`). `config` is a
   * diffusers-format folder for the configs, tokenizers and scheduler (its weights are not read).
   *
   * ```ts
   * const pipe = await Pipeline.fromSingleFile('playground-v2.5.fp16.safetensors', { config: './playground-v2.5-1024px-aesthetic' })
   * ```
   */
  static async fromSingleFile (file: string, options: LoadOptions & { config: string }): Promise<Pipeline> {
    if (typeof file !== 'string' || file === '') throw new Pg25Error('PG25_INVALID_ARGUMENT', 'fromSingleFile needs a checkpoint path')
    if (options === null || typeof options !== 'object' || typeof options.config !== 'string') {
      throw new Pg25Error('PG25_INVALID_ARGUMENT', 'fromSingleFile needs options.config: a diffusers-format folder with the model\'s configs and tokenizers')
    }
    checkLoadOptions('fromSingleFile', options)
    try {
      await requireRegularFile(file, 'the checkpoint', 'PG25_NOT_FOUND')
      const prep = await prepare(await resolveModelDir(options.config, options, false), options)
      const bases: ComponentSource[] = []
      for (const n of COMPONENTS) bases.push(await readComponentConfig(prep.root, prep.index, n))
      return await Pipeline.assemble(prep, await singleFileSources(path.resolve(file), bases), options,
        path.basename(file).replace(/\.safetensors$/i, ''))
    } catch (err) {
      throw asSignalled(err, options.signal)
    }
  }

  private static async assemble (prep: Prepared, sources: ComponentSource[], options: LoadOptions, model: string): Promise<Pipeline> {
    const models = await loadModels(prep, sources, options)
    return new Pipeline({ ...prep, ...models, dir: prep.root, memoryLimit: options.memoryLimit, modelName: options.modelName,
      promptStyle: options.promptStyle ?? 'a1111', model })
  }

  /** 'cpu', or 'cuda' (GPU 0) or 'cuda:N': where this pipeline runs. */
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
    if (this.disposed) throw new Pg25Error('PG25_DISPOSED', 'generate() called after dispose()')
    const o = withoutNulls(options)
    const plan = validateOptions(prompt, o, { defaultSize: this.defaultSize, latentChannels: this.unet.info.inChannels })
    let image: ImageInput | undefined
    let imageSize: Size | undefined
    if (o.image !== undefined) {
      // The output size from the image's header: nothing is decoded before it passes the limits.
      const probed = await probeImage(o.image)
      image = probed.input
      imageSize = probed
      plan.width ??= Math.floor(probed.width / 8) * 8
      plan.height ??= Math.floor(probed.height / 8) * 8
      if (plan.width < 8 || plan.height < 8) throw new Pg25Error('PG25_INVALID_ARGUMENT', `image is ${probed.width}x${probed.height}; it must be at least 8x8`)
    }
    const mask = o.mask === undefined ? undefined : await probeMask(o.mask, imageSize)
    checkScaleOverrides(o.loras)
    const negative = plan.guidance > 1 && !(o.negativePrompt === undefined && this.index.forceZerosForEmptyPrompt)
    const prompts = planPrompts(this.tokenizers, o.promptStyle ?? this.promptStyle, { ...o, prompt }, negative)
    this.checkRequestMemory(plan, prompts.tokens)
    for (const w of prompts.warnings) this.warn(w)
    const run = this.queue.then(async () => await this.run(prompt, { ...o, image, mask }, plan, prompts))
    this.queue = run.catch(() => {})
    return await run
  }

  /** Runs `fn` in the call queue: after the calls queued before it, before those queued after. */
  private async enqueue<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      if (this.disposed) throw new Pg25Error('PG25_DISPOSED', 'the pipeline was disposed')
      return await fn()
    })
    this.queue = run.catch(() => {})
    return await run
  }

  /**
   * Loads a LoRA `.safetensors` (kohya/A1111 or diffusers/PEFT naming) and merges it into the UNet and
   * both text encoders at `scale` (default 1); several stack. `fileOrId` is a path, or a Hub id
   * (`org/name`, when no such file exists) whose LoRA file is fetched into the Hugging Face cache as
   * models are (`weightName` picks one of several; a cached one loads without a request). The file is
   * checked against the model first: a key that matches no module, or a shape that disagrees, rejects
   * with PG25_BAD_WEIGHTS and changes nothing. It applies between generate() calls: those queued before
   * it run without it.
   *
   * ```ts
   * await pipe.loadLoRA('./pixel-art-xl.safetensors', { name: 'pixel', scale: 0.8 })
   * await pipe.loadLoRA('nerijs/pixel-art-xl', { weightName: 'pixel-art-xl.safetensors' }) // named 'pixel-art-xl'
   * const { images } = await pipe.generate('a castle, pixel art')
   * ```
   */
  async loadLoRA (fileOrId: string, options: LoRALoadOptions = {}): Promise<LoRAInfo> {
    if (this.disposed) throw new Pg25Error('PG25_DISPOSED', 'loadLoRA() called after dispose()')
    if (typeof fileOrId !== 'string' || fileOrId === '') throw new Pg25Error('PG25_INVALID_ARGUMENT', 'loadLoRA needs a .safetensors path or a Hub id')
    checkLoRAOptions(options)
    // Read and checked at once (a refusal comes now, not after the calls queued before), added in
    // call order: after the calls queued before this one, before those queued after.
    const reading = resolveLoRASource(fileOrId, options).then(async src => await this.lora.read(src.file, { name: options.name ?? src.name, scale: options.scale }))
    const added = this.enqueue(async () => {
      const lora = await reading.catch(() => undefined)
      if (lora === undefined) return undefined
      await this.lora.add(lora)
      return this.loras.find(l => l.name === lora.name)
    })
    added.catch(() => {})
    await reading
    return (await added)!
  }

  /** Changes a loaded LoRA's scale (0 turns it off without unloading), from the next generate() call on. */
  async setLoRAScale (name: string, scale: number): Promise<void> {
    const s = checkScale(scale, 'the LoRA scale')
    await this.enqueue(async () => await this.lora.setScale(name, s))
  }

  /** Unloads a LoRA: the weights it changed are read again from the model's files (exactly the originals). */
  async unloadLoRA (name: string): Promise<void> {
    await this.enqueue(async () => await this.lora.remove(name))
  }

  /** The loaded LoRAs, in load order, with their scales. */
  get loras (): LoRAInfo[] {
    return this.lora.list()
  }

  /** Refuses, before queueing, a request whose working set exceeds memoryLimit's room or the free memory. */
  private checkRequestMemory (plan: Plan, tokens: number): void {
    const size = { width: plan.width!, height: plan.height!, count: plan.count, guided: plan.guidance > 1, tokens }
    if (this.memoryLimit !== undefined) {
      const room = this.memoryLimit - this.rt.engine.bytesInUse()
      checkRequestMemory(this.cost, size, this.device, room, `memoryLimit leaves ${fmtBytes(room)} beside the model`)
    } else {
      const free = this.rt.freeMemory()
      checkRequestMemory(this.cost, size, this.device, free, `only ${fmtBytes(free)} is available on the ${this.device}`)
    }
  }

  /**
   * Both text encoders: embeddings [B, tokens, 2048] and pooled [B, 1280] for B = count (no guidance) or
   * 2 x count laid out [negative x count, prompt x count]. Without a negative prompt the negative half
   * is zeros (force_zeros_for_empty_prompt). 'plain' prompts stay on the device as diffusers' do.
   */
  private async encodePrompts (prompts: PromptPlan, cfg: boolean, count: number, signal: AbortSignal):
  Promise<{ embeds: NativeTensor, pooled: NativeTensor }> {
    if (prompts.style !== 'plain') return await encodeStyled(this.rt, this.encoders, prompts, cfg, count, signal)
    return await encodePlain(this.rt, this.encoders, prompts, cfg, count, signal)
  }

  /**
   * The conditioning generate() would give the UNet for these prompts, on the host: what diffusers'
   * `prompt_embeds`, `pooled_prompt_embeds` (and their negatives) take. `embeds` is [rows, tokens, 2048],
   * `pooled` [rows, 1280], rows [negative, prompt] with guidance (the default), else [prompt].
   *
   * ```ts
   * const { embeds, pooled, tokens } = await pipe.encodePrompt('a (red:1.3) cat', { negativePrompt: 'blurry' })
   * ```
   */
  async encodePrompt (prompt: string, options: EncodePromptOptions = {}):
  Promise<{ embeds: Float32Array, pooled: Float32Array, rows: number, tokens: number, warnings: string[] }> {
    if (this.disposed) throw new Pg25Error('PG25_DISPOSED', 'encodePrompt() called after dispose()')
    const o = withoutNulls(options)
    const plan = validateOptions(prompt, o, { defaultSize: this.defaultSize, latentChannels: this.unet.info.inChannels })
    const cfg = plan.guidance > 1
    const negative = cfg && !(o.negativePrompt === undefined && this.index.forceZerosForEmptyPrompt)
    const prompts = planPrompts(this.tokenizers, o.promptStyle ?? this.promptStyle, { ...o, prompt }, negative)
    return await this.enqueue(async () => {
      const { embeds, pooled } = await this.encodePrompts(prompts, cfg, 1, this.closing.signal)
      try {
        const [rows, tokens] = embeds.shape
        return { embeds: this.rt.toHost(embeds), pooled: this.rt.toHost(pooled), rows, tokens, warnings: prompts.warnings }
      } finally {
        release(embeds, pooled)
      }
    })
  }

  /** The image-to-image start: the VAE-encoded input, sampled with the generator, in UNet latent space. */
  private async encodeImage (image: ImageInput, w: number, h: number, gen: TorchGenerator, signal: AbortSignal): Promise<{ init: Float32Array, width: number, height: number }> {
    let rgb = await loadImage(image)
    if (w !== rgb.width || h !== rgb.height) rgb = await loadImage(rgb, { width: w, height: h })
    const px = new Float32Array(3 * w * h)
    for (let i = 0; i < w * h; i++) for (let c = 0; c < 3; c++) px[c * w * h + i] = (rgb.data[i * 3 + c] / 255) * 2 - 1
    this.vaeEncoder ??= VAEEncoderModel.load(this.rt, this.vaeSource)
    const encoder = await this.vaeEncoder
    const imgT = this.rt.fromHost(px, [1, 3, h, w])
    const { mean, std } = await encoder.encode(imgT, signal).finally(() => imgT.dispose())
    const shape = mean.shape
    const m = this.rt.toHost(mean)
    const sd = this.rt.toHost(std)
    release(mean, std)
    // latent_dist.sample(generator): drawn before the noise, from the same generator.
    const eps = gen.randn(shape)
    // diffusers 0.27.2 (the version the model card names) scales encoded latents by scaling_factor
    // alone; latents_mean/std are applied only when decoding. Matching it keeps seeds equal.
    const { scalingFactor } = this.vae.stats
    const init = new Float32Array(m.length)
    for (let i = 0; i < init.length; i++) init[i] = (m[i] + sd[i] * eps[i]) * scalingFactor
    return { init, width: w, height: h }
  }

  private previewMatrix (): { m: Float32Array, bias: Float32Array } {
    const { scalingFactor, mean, std } = this.vae.stats
    const C = this.unet.info.inChannels
    const m = new Float32Array(3 * C)
    const bias = Float32Array.from(SDXL_RGB_BIAS)
    if (C !== SDXL_RGB.length) return { m, bias }
    for (let c = 0; c < 3; c++) {
      for (let k = 0; k < C; k++) {
        const f = SDXL_RGB[k][c] * SDXL_SCALE
        m[c * C + k] = f * (std ? std[k] : 1) / scalingFactor
        if (mean) bias[c] += f * mean[k]
      }
    }
    return { m, bias }
  }

  private parameters (prompt: string, o: GenerateOptions, plan: Plan, scheduler: SchedulerName, width: number, height: number, index: number): string {
    const lines = [prompt]
    if (o.negativePrompt) lines.push(`Negative prompt: ${o.negativePrompt}`)
    const fields = [`Steps: ${plan.steps}`, `Sampler: ${SAMPLER_LABEL[scheduler]}`, `CFG scale: ${plan.guidance}`, `Seed: ${plan.seed}`, `Size: ${width}x${height}`]
    if (this.modelName !== undefined) fields.push(`Model: ${this.modelName}`)
    if (o.image !== undefined) fields.push(`Denoising strength: ${plan.strength}`)
    if (plan.count > 1) fields.push(`Batch size: ${plan.count}`, `Batch pos: ${index}`)
    fields.push('Version: @pg25/native')
    lines.push(fields.join(', '))
    return lines.join('\n')
  }

  /** Starting latents: seeded noise x init sigma, or (image-to-image) the encoded image noised to the start sigma. */
  private async startLatents (o: GenerateOptions, plan: Plan, scheduler: Scheduler, gen: TorchGenerator, signal: AbortSignal, inpaint?: Inpainting): Promise<{ x: NativeTensor, width: number, height: number, tStart: number }> {
    const { steps, count: n } = plan
    const C = this.unet.info.inChannels
    if (o.image !== undefined) {
      const enc = await this.encodeImage(o.image, plan.width!, plan.height!, gen, signal)
      const tStart = steps - Math.min(Math.trunc(steps * plan.strength), steps)
      const shape = [n, C, enc.height / 8, enc.width / 8]
      const noise = gen.randn(shape)
      if (inpaint !== undefined) return { x: this.rt.fromHost(inpaint.start(enc.init, noise, scheduler, tStart, plan.strength, gen, shape), shape), width: enc.width, height: enc.height, tStart }
      const sigma = scheduler.sigmas[tStart]
      const start = new Float32Array(noise.length)
      for (let i = 0; i < start.length; i++) start[i] = enc.init[i % enc.init.length] + noise[i] * sigma
      return { x: this.rt.fromHost(start, shape), width: enc.width, height: enc.height, tStart }
    }
    const width = plan.width!
    const height = plan.height!
    const shape = [n, C, height / 8, width / 8]
    const noise = this.rt.fromHost(o.latents ?? gen.randn(shape), shape)
    const x = this.rt.ops.lincomb([[scheduler.initNoiseSigma, noise]])
    noise.dispose()
    return { x, width, height, tStart: 0 }
  }

  private async run (prompt: string, o: GenerateOptions, plan: Plan, prompts: PromptPlan): Promise<GenerateResult> {
    if (this.disposed) throw new Pg25Error('PG25_DISPOSED', 'the pipeline was disposed before this call ran')
    // The caller's signal or dispose() stops the run, inside a native call if one is running.
    const link = linkSignals(o.signal, this.closing.signal)
    try {
      return await this.execute(prompt, o, plan, prompts, link.signal)
    } catch (err) {
      if (err instanceof AbortError && this.disposed && o.signal?.aborted !== true) throw new Pg25Error('PG25_DISPOSED', 'the pipeline was disposed during this call')
      throw asSignalled(err, o.signal)
    } finally {
      link.unlink()
    }
  }

  private async execute (prompt: string, o: GenerateOptions, plan: Plan, prompts: PromptPlan, signal: AbortSignal):
  Promise<GenerateResult> {
    throwIfAborted(signal)
    const { steps, guidance, seed, count: n } = plan
    const cfg = guidance > 1
    const scheduler = createScheduler(this.schedulerConfig, this.schedulerSource, o.scheduler)
    scheduler.setTimesteps(steps)
    const ops = this.rt.ops
    const gen = new TorchGenerator(seed)
    await this.lora.apply(o.loras)
    const inpaint = o.mask === undefined ? undefined : await Inpainting.load(o.mask, plan.width!, plan.height!, steps)
    const { x: start, width, height, tStart } = await this.startLatents(o, plan, scheduler, gen, signal, inpaint)
    let x = start
    const held: Array<NativeTensor | undefined> = []
    try {
      const { embeds, pooled } = await this.encodePrompts(prompts, cfg, n, signal)
      held.push(embeds, pooled)
      const orig = o.originalSize ?? { width, height }
      const target = o.targetSize ?? { width, height }
      const crop = o.cropTopLeft ?? { top: 0, left: 0 }
      const ids = [orig.height, orig.width, crop.top, crop.left, target.height, target.width]
      const timeIds = Float32Array.from(Array.from({ length: (cfg ? 2 : 1) * n }, () => ids).flat())
      const preview = o.preview === true ? this.previewMatrix() : null

      const run = steps - tStart
      for (let i = tStart; i < steps; i++) {
        throwIfAborted(signal)
        if (this.disposed) throw new Pg25Error('PG25_DISPOSED', 'the pipeline was disposed during this call')
        const scaled = scheduler.scaleModelInput(ops, x, i)
        // With guidance the UNet takes the one latent for both halves of the conditioning (no
        // concatenated copy), and its output's halves are read in place (views on the GPU).
        const out = await this.unet.predict(scaled, scheduler.timesteps[i], embeds, pooled, timeIds, signal)
          .finally(() => release(scaled))
        let eps = out
        if (cfg) {
          const uncond = this.rt.call(() => this.rt.engine.slice0(out, 0, n))
          const cond = this.rt.call(() => this.rt.engine.slice0(out, n, n))
          eps = ops.lincomb([[1 - guidance, uncond], [guidance, cond]])
          release(uncond, cond, out)
        }
        let previews: RGBImage[] | undefined
        if (preview) {
          const x0 = scheduler.denoised(ops, eps, i, x)
          const bytes = this.rt.call(() => this.rt.engine.latentPreview(x0, preview.m, preview.bias))
          x0.dispose()
          const pw = width / 8
          const ph = height / 8
          previews = Array.from({ length: n }, (_, k) => ({ width: pw, height: ph, data: bytes.subarray(k * pw * ph * 3, (k + 1) * pw * ph * 3) }))
        }
        const next = scheduler.step(ops, eps, i, x)
        release(eps, x)
        x = inpaint === undefined ? next : inpaint.blend(this.rt, next, i, scheduler)
        o.onStep?.({ step: i - tStart + 1, steps: run, sigma: scheduler.sigmas[i], previews })
      }
      throwIfAborted(signal)
      const latents = this.rt.toHost(x)
      for (const v of latents) {
        if (!Number.isFinite(v)) throw new Pg25Error('PG25_NON_FINITE', `the run produced NaN or infinite latents (${width}x${height}, ${steps} steps, guidance ${guidance}); no image is returned: the model's weights may be broken`)
      }
      const warnings = prompts.warnings
      if (o.outputType === 'latent') return { seed, images: [], latents, width, height, warnings }
      const image = await this.vae.decode(x, true, signal)
      held.push(image)
      const data = await this.vae.toRGB8(image)
      const per = width * height * 3
      const name = scheduler.name
      const images = Array.from({ length: n }, (_, k) => makeImage(width, height, data.subarray(k * per, (k + 1) * per), this.parameters(prompt, o, plan, name, width, height, k)))
      return { seed, images, width, height, warnings }
    } finally {
      scheduler.reset(ops)
      release(x, ...held)
    }
  }

  /**
   * Bytes this pipeline holds: `host` and `device` by its backend (weights and live tensors; `device`
   * is 0 on the CPU backend), and the process's resident set.
   */
  memory (): MemoryInfo {
    const backend = this.disposed ? 0 : this.rt.engine.bytesInUse()
    const onGpu = this.rt.device.startsWith('cuda')
    return { host: onGpu ? 0 : backend, device: onGpu ? backend : 0, rss: process.memoryUsage.rss() }
  }

  /** Frees the model's memory now. Pending generate() calls reject with PG25_DISPOSED. */
  async dispose (): Promise<void> {
    if (this.disposed) return
    this.disposed = true
    this.closing.abort()
    await this.queue
    this.rt.dispose()
  }

  async [Symbol.asyncDispose] (): Promise<void> {
    await this.dispose()
  }
}
