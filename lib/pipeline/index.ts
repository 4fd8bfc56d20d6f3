import path from 'node:path'
import { linkSignals } from '../cancel'
import { AbortError, asSignalled, Pg25Error } from '../errors'
import { probeImage, type ImageInput } from '../image'
import { probeMask } from '../inpaint'
import { requireRegularFile } from '../io/regular-file'
import { checkScale, checkScaleOverrides, LoRAs, type LoRAInfo, type LoRALoadOptions } from '../lora/lora'
import { resolveLoRASource } from '../lora/source'
import { checkRequestMemory, fmtBytes, type CostModel, type Pageable } from '../memory'
import { COMPONENTS, loadModels, prepare, type Prepared } from '../model/load'
import { readComponentConfig, resolveComponent, type ComponentSource, type ModelIndex } from '../model/model-dir'
import { singleFileSources } from '../model/single-file'
import { VAEEncoderModel, type TextEncoderModel, type UNetModel, type VAEModel } from '../model/components'
import { resolveModelDir } from '../hub/resolve'
import {
  checkLoadOptions, checkLoRAOptions, validateOptions, withoutNulls, type GenerateOptions, type GenerateResult, type LoadOptions,
  type MemoryInfo, type Offload, type Plan, type Size
} from '../options'
import type { PromptStyle } from '../prompt/chunk'
import { planPrompts, type PromptPlan } from '../prompt/plan'
import type { Runtime } from '../runtime'
import { TensorScope } from '../tensor-scope'
import type { RawConfig } from '../scheduler/edm-config'
import type { CLIPTokenizer } from '../tokenizer/clip-tokenizer'
import { encodePrompt, runSteps, type RunModels, type RunRequest } from './steps'

export type { GenerateOptions, GenerateResult, LoadOptions, LoadProgress, MemoryInfo, Size, StepInfo } from '../options'
export type { PromptStyle } from '../prompt/chunk'

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
  private readonly offload: Offload
  private readonly pageable: Pageable
  private readonly modelName: string | undefined
  private readonly promptStyle: PromptStyle
  private queue: Promise<unknown> = Promise.resolve()
  private readonly lora: LoRAs
  private disposed = false
  /** aborted by dispose(), so that a running call stops between blocks instead of finishing its step */
  private readonly closing = new AbortController()

  private constructor (init: {
    dir: string, rt: Runtime, index: ModelIndex, schedulerConfig: RawConfig, schedulerSource: string,
    tokenizers: [CLIPTokenizer, CLIPTokenizer], encoders: [TextEncoderModel, TextEncoderModel], unet: UNetModel, vae: VAEModel,
    vaeSource: ComponentSource, warn: (msg: string) => void,
    cost: CostModel, memoryLimit: number | undefined, offload: Offload, pageable: Pageable, modelName: string | undefined,
    promptStyle: PromptStyle, model: string
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
    // Paging is host memory's: on the GPU the weights stay where they are.
    this.offload = init.rt.device === 'cpu' ? init.offload : 'never'
    this.pageable = init.pageable
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
   * const onProgress = (p: LoadProgress) => console.log(p.component, p.loadedBytes, p.totalBytes)
   * const local = await Pipeline.fromPretrained(dir, { device: 'cpu', onProgress })
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
    return new Pipeline({ ...prep, ...models, dir: prep.root, memoryLimit: options.memoryLimit, offload: options.offload ?? 'auto', modelName: options.modelName,
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
    const prompts = this.planPrompts(prompt, o, plan.guidance > 1)
    const pageIdle = this.checkRequestMemory(plan, prompts.tokens)
    for (const w of prompts.warnings) this.warn(w)
    return await this.enqueue(async () => await this.run({ prompt, options: { ...o, image, mask }, plan, prompts, pageIdle }))
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
    const reading = resolveLoRASource(fileOrId, options)
      .then(async src => await this.lora.read(src.file, { name: options.name ?? src.name, scale: options.scale }))
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

  /**
   * The prompts tokenized for a call. With guidance the negative half is encoded, unless no negative prompt
   * was given and the model zeroes it (force_zeros_for_empty_prompt).
   */
  private planPrompts (prompt: string, o: EncodePromptOptions, guided: boolean): PromptPlan {
    const negative = guided && !(o.negativePrompt === undefined && this.index.forceZerosForEmptyPrompt)
    return planPrompts(this.tokenizers, o.promptStyle ?? this.promptStyle, { ...o, prompt }, negative)
  }

  /**
   * Refuses, before queueing, a request whose working set exceeds memoryLimit's room or the free memory,
   * and says whether its run pages the idle components' weights out (offload) to fit.
   */
  private checkRequestMemory (plan: Plan, tokens: number): boolean {
    const size = { width: plan.width!, height: plan.height!, count: plan.count, guided: plan.guidance > 1, tokens }
    const pageable = this.offload === 'never' ? undefined : this.pageable
    // Weights paged out by the last run count as held: this run reads them back.
    const away = (this.encoders.some(e => e.paged) ? this.pageable.encoders : 0) + (this.unet.paged ? this.pageable.unet : 0)
    let page: boolean
    if (this.memoryLimit !== undefined) {
      const room = this.memoryLimit - this.rt.engine.bytesInUse() - away
      page = checkRequestMemory(this.cost, size, this.device, room, `memoryLimit leaves ${fmtBytes(room)} beside the model`, pageable)
    } else {
      const free = this.rt.freeMemory() - away
      page = checkRequestMemory(this.cost, size, this.device, free, `only ${fmtBytes(free)} is available on the ${this.device}`, pageable)
    }
    return page || this.offload === 'always'
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
    const prompts = this.planPrompts(prompt, o, cfg)
    return await this.enqueue(async () => {
      using scope = new TensorScope()
      const cond = await encodePrompt({ rt: this.rt, encoders: this.encoders }, prompts, cfg, 1, this.closing.signal)
      const [rows, tokens] = scope.hold(cond.embeds).shape
      scope.hold(cond.pooled)
      return { embeds: this.rt.toHost(cond.embeds), pooled: this.rt.toHost(cond.pooled), rows, tokens, warnings: prompts.warnings }
    })
  }

  /** What a run reads: this pipeline's models and settings. */
  private get models (): RunModels {
    return {
      rt: this.rt,
      channels: this.unet.info.inChannels,
      vae: this.vae,
      vaeEncoder: async () => await (this.vaeEncoder ??= VAEEncoderModel.load(this.rt, this.vaeSource)),
      encoders: this.encoders,
      unet: this.unet,
      lora: this.lora,
      schedulerConfig: this.schedulerConfig,
      schedulerSource: this.schedulerSource,
      modelName: this.modelName,
      warn: this.warn,
      disposed: () => this.disposed
    }
  }

  private async run (request: RunRequest): Promise<GenerateResult> {
    const signal = request.options.signal
    // The caller's signal or dispose() stops the run, inside a native call if one is running.
    const link = linkSignals(signal, this.closing.signal)
    try {
      return await runSteps(this.models, request, link.signal)
    } catch (err) {
      if (err instanceof AbortError && this.disposed && signal?.aborted !== true) {
        throw new Pg25Error('PG25_DISPOSED', 'the pipeline was disposed during this call')
      }
      throw asSignalled(err, signal)
    } finally {
      link.unlink()
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
