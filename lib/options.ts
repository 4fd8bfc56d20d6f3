// The options of loading and generating, and their checks before any work: every numeric option is
// bounded to what the model can use (a 1e308 guidance scale or a 1e300 original size would only make
// NaN images), and messages show the value as given (a string "64" is quoted, not taken for 64).
import { randomInt } from 'node:crypto'
import { Pg25Error } from './errors'
import { MAX_SIDE, type GeneratedImage, type ImageInput, type RGBImage } from './image'
import type { Device } from './runtime'
import type { SchedulerName } from './scheduler'
import type { DownloadProgress } from './hub/download'
import { PROMPT_STYLES, type PromptStyle } from './prompt/chunk'

/** Options of `downloadFile`. */
export interface DownloadFileOptions {
  /** a branch, tag or commit hash (default 'main') */
  revision?: string
  /** a Hugging Face access token, for gated or private repos (default: $HF_TOKEN, else the `huggingface-cli login` token) */
  token?: string
  /** byte progress of the transfer (not called when the file is cached) */
  onProgress?: (p: DownloadProgress) => void
  signal?: AbortSignal
}

/** Options of `Pipeline.loadLoRA`. */
export interface LoRALoadOptions {
  /**
   * how `setLoRAScale`, `unloadLoRA` and `generate({ loras })` name it (default: the file name without `.safetensors`;
   * for a Hub id, the repo's name)
   */
  name?: string
  /** its strength (default 1): the weights change by scale x alpha / rank x up · down */
  scale?: number
  /**
   * for a Hub id: the file of the repo to load (default: its only `.safetensors` file, or `pytorch_lora_weights.safetensors`,
   * as diffusers picks)
   */
  weightName?: string
  /** for a Hub id: a branch, tag or commit hash (default 'main') */
  revision?: string
  /** for a Hub id: a Hugging Face access token, for gated or private repos (default: $HF_TOKEN, else the `huggingface-cli login` token) */
  token?: string
}

/**
 * Progress of `fromPretrained`/`fromSingleFile`, in bytes. Phase 'download' (a Hub id not yet in the
 * cache) names the `file` being fetched; phase 'load' names the `component` whose weights are being
 * read. `totalBytes` is known from the start of each phase and `loadedBytes` grows to it.
 *
 * ```ts
 * await Pipeline.fromPretrained(id, { onProgress: p => console.log(p.phase, p.component ?? p.file, `${p.loadedBytes}/${p.totalBytes}`) })
 * ```
 */
export interface LoadProgress {
  phase: 'download' | 'load'
  /** the file being downloaded (phase 'download') */
  file?: string
  /** phase 'download': the bytes of `file` in hand, of its own `fileTotalBytes` (`loadedBytes` counts all the files) */
  fileLoadedBytes?: number
  fileTotalBytes?: number
  /** the component being loaded (phase 'load'): text_encoder, text_encoder_2, unet, vae */
  component?: string
  /** bytes done so far in this phase, of `totalBytes` (for 'load': the weights' bytes as the files store them) */
  loadedBytes: number
  totalBytes: number
}

export const PRECISIONS = ['auto', 'fp32', 'bf16', 'fp16'] as const
export const OFFLOADS = ['auto', 'always', 'never'] as const
export type Offload = typeof OFFLOADS[number]
export type Precision = typeof PRECISIONS[number]

export interface LoadOptions {
  /** 'auto' (default): GPU 0 when usable, else the CPU with a notice; 'cpu'; 'cuda' or 'cuda:N' (GPU N; rejects without it) */
  device?: Device
  /** 'fp16' prefers the `*.fp16.safetensors` files (the default picks plain files, then fp16 ones) */
  variant?: 'fp16'
  signal?: AbortSignal
  onProgress?: (p: LoadProgress) => void
  /** receives notices (CPU fallback, truncated prompts, missing variants); default: a line on stderr */
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
   * How the CPU backend stores the weights: 'fp32' (exact, ~14 GB for the real model), 'bf16' or 'fp16'
   * (half the memory: bf16 products on CPUs with AVX512-BF16, else float32 arithmetic on the widened
   * values), or 'auto' (default): fp32 when the model fits `memoryLimit` (or the available memory),
   * else half precision with a notice (bf16 where the CPU has AVX512-BF16, else fp16). The CUDA backend
   * computes in float16 whatever this says.
   */
  precision?: Precision
  /**
   * Where memory is short on the CPU backend, the weights of the components idle during a run can wait
   * in a scratch file in the temporary folder: the text encoders while the UNet runs, the UNet while
   * the VAE decodes (each read back, bit for bit, when next used: the same images, a few seconds more a
   * run). 'auto' (default): only for a request that would not fit `memoryLimit` (or the available memory)
   * otherwise; 'always'; 'never' (such a request is refused with PG25_OUT_OF_MEMORY). Host memory only:
   * the CUDA backend keeps its weights on the GPU.
   *
   * ```ts
   * // The real model in bf16 within 8 GB: about 6.5 GiB of weights, the 1024x1024 decode beside the VAE's alone.
   * await Pipeline.fromPretrained(id, { device: 'cpu', precision: 'bf16', memoryLimit: 8e9 })
   * ```
   */
  offload?: Offload
  /**
   * The model's name for the `Model:` field of PNG parameters (e.g. 'playground-v2.5-1024px-aesthetic').
   * Default: none, so no local folder name reaches images a server sends out.
   */
  modelName?: string
  /** Hub ids: the branch, tag or commit to use (default 'main') */
  revision?: string
  /** Hub ids: an access token for gated or private models (default: $HF_TOKEN, else the token file under $HF_HOME) */
  token?: string
  /**
   * How prompts are read (default 'a1111'): 'a1111' (AUTOMATIC1111's weighting syntax and long
   * prompts), 'comfy' (ComfyUI's), 'plain' (diffusers: no syntax, cut at 77 tokens). generate() may
   * override it per call.
   */
  promptStyle?: PromptStyle
  /** Hub ids: the Hugging Face cache folder to read and fill (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub) */
  cacheDir?: string
}

export interface Size { width: number, height: number }

export interface StepInfo {
  /** steps done so far, 1-based */
  step: number
  steps: number
  /** the noise level just stepped from */
  sigma: number
  /**
   * with `preview: true`: a small RGB preview (H/8 x W/8) of each image's current estimate (models with the SDXL
   * VAE's 4 latent channels; others warn once and give none)
   */
  previews?: RGBImage[]
}

export interface GenerateOptions {
  negativePrompt?: string
  /** prompt for the second text encoder (default: `prompt`) */
  prompt2?: string
  /** how this call's prompts are read (default: the pipeline's, see LoadOptions.promptStyle) */
  promptStyle?: PromptStyle
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
  /**
   * with `image`: how much to change it, (0, 1]; default 0.3 (diffusers' default; 0.9999 with `mask`, as its inpainting).
   * 1 ignores the image's content.
   */
  strength?: number
  /**
   * Inpainting, with `image`: white (repaint) and black (keep) of the image's size, in the forms `image`
   * takes. Only the white area is generated; the rest keeps the image (as the VAE reproduces it).
   *
   * ```ts
   * const r = await pipe.generate('a red armchair', { image: 'room.png', mask: 'chair-mask.png', strength: 1 })
   * ```
   */
  mask?: ImageInput
  /**
   * LoRA scales for this call only, by the names given to `loadLoRA` (others keep their scale; 0 turns one off).
   *
   * ```ts
   * await pipe.generate('a cat, pixel art', { loras: { pixel: 0.8, detail: 0 } })
   * ```
   */
  loras?: Record<string, number>
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
  /** notices about this call's prompts (a prompt cut to 77 tokens), also passed to onWarning */
  warnings: string[]
}

/** Bytes held by a pipeline: `host` and `device` by its backend (weights and live tensors), `rss` of the process. */
export interface MemoryInfo { host: number, device: number, rss: number }

/** What validation settles: the output size is null until an input image's header is read. */
export interface Plan {
  width: number | null, height: number | null, steps: number, guidance: number, seed: number, count: number, strength: number
}

export const DEFAULT_STEPS = 50
export const DEFAULT_GUIDANCE = 3
/** diffusers' default for image-to-image */
export const DEFAULT_STRENGTH = 0.3
/** diffusers' default for inpainting (StableDiffusionXLInpaintPipeline): the masked area starts almost from noise */
export const DEFAULT_INPAINT_STRENGTH = 0.9999
/** The strength a call runs at: its own, else the default for inpainting (with a mask) or image-to-image. */
export const strengthOf = (o: GenerateOptions): number => o.strength ?? (o.mask !== undefined ? DEFAULT_INPAINT_STRENGTH : DEFAULT_STRENGTH)
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

/** A value as a type error quotes it: numbers as they are, anything else with its type (`"3" (a string)`). */
export function got (v: unknown): string {
  if (typeof v === 'number' || v === null || v === undefined) return String(v)
  if (typeof v === 'function') return 'a function'
  const type = Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`
  return `${typeof v === 'symbol' ? String(v) : show(v)} (${type})`
}

/** One option's check: what it wants, in words, and the test. */
interface Check { wants: string, ok: (v: unknown) => boolean }

const intIn = (v: unknown, lo: number, hi: number): boolean => Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi
const check = (wants: string, ok: (v: unknown) => boolean): Check => ({ wants, ok })
const aString = check('a string', v => typeof v === 'string')
const aFunction = check('a function', v => typeof v === 'function')
const aSignal = check('an AbortSignal', v => v instanceof AbortSignal)
const integer = (lo: number, hi: number): Check => check(`an integer from ${lo} to ${hi}`, v => intIn(v, lo, hi))
const oneOf = (...values: string[]): Check => check(values.map(x => `'${x}'`).join(' or '), v => values.includes(v as string))
const side = check(`a multiple of 8 between 8 and ${MAX_SIDE}`, v => intIn(v, 8, MAX_SIDE) && (v as number) % 8 === 0)
const size = check(`{ width, height } in integers from 1 to ${MAX_CONDITIONING}`, v => typeof v === 'object' && v !== null &&
  intIn((v as Size).width, 1, MAX_CONDITIONING) && intIn((v as Size).height, 1, MAX_CONDITIONING))
/** Checked where it is used (image: probeImage; latents: against the output size). */
const later = check('', () => true)

// The known options of each call, one line each, with their checks: unknown keys are refused, so an
// option another library spells differently is never silently ignored. A key added to an options
// interface must be added here too (the Record type makes tsc insist).
const LOAD_OPTIONS: Record<keyof LoadOptions, Check> = {
  device: check("'auto', 'cpu', 'cuda' or 'cuda:N'", v => typeof v === 'string'), // the value: Runtime.open
  variant: oneOf('fp16'),
  signal: aSignal,
  onProgress: aFunction,
  onWarning: aFunction,
  memoryLimit: check('a positive number of bytes', v => typeof v === 'number' && v > 0),
  precision: oneOf(...PRECISIONS),
  offload: oneOf(...OFFLOADS),
  modelName: aString,
  revision: aString,
  token: aString,
  promptStyle: oneOf(...PROMPT_STYLES),
  cacheDir: check('a non-empty folder path', v => typeof v === 'string' && v !== '')
}
const SINGLE_FILE_OPTIONS: Record<keyof LoadOptions | 'config', Check> = { ...LOAD_OPTIONS, config: aString }
const LORA_OPTIONS: Record<keyof LoRALoadOptions, Check> = {
  name: later, // LoRAs.read (lib/lora/lora.ts)
  scale: later, // checkScale (lib/lora/lora.ts)
  weightName: aString,
  revision: aString,
  token: aString
}
const DOWNLOAD_FILE_OPTIONS: Record<keyof DownloadFileOptions, Check> = {
  revision: aString,
  token: aString,
  onProgress: aFunction,
  signal: aSignal
}
const GENERATE_OPTIONS: Record<keyof GenerateOptions, Check> = {
  negativePrompt: aString,
  prompt2: aString,
  negativePrompt2: aString,
  promptStyle: oneOf(...PROMPT_STYLES),
  width: side,
  height: side,
  steps: integer(1, MAX_STEPS),
  guidanceScale: check(`a number from 0 to ${MAX_GUIDANCE}`, v => typeof v === 'number' && v >= 0 && v <= MAX_GUIDANCE),
  scheduler: oneOf('dpmpp-2m', 'euler'),
  seed: check('a non-negative safe integer', v => Number.isSafeInteger(v) && (v as number) >= 0),
  count: integer(1, MAX_COUNT),
  latents: check('a Float32Array', v => v instanceof Float32Array),
  image: later,
  mask: later, // probeMask (lib/inpaint.ts)
  loras: later, // checkScaleOverrides (lib/lora/lora.ts)
  strength: check('in (0, 1]', v => typeof v === 'number' && v > 0 && v <= 1),
  outputType: oneOf('image', 'latent'),
  originalSize: size,
  cropTopLeft: check(`{ top, left } in integers from 0 to ${MAX_CONDITIONING}`, v => typeof v === 'object' && v !== null &&
    intIn((v as { top: number }).top, 0, MAX_CONDITIONING) && intIn((v as { left: number }).left, 0, MAX_CONDITIONING)),
  targetSize: size,
  onStep: aFunction,
  preview: check('true or false', v => typeof v === 'boolean'),
  signal: aSignal
}

/**
 * Other libraries' option names (diffusers, transformers.js) and what to use here: one of our keys
 * (named only once it is an option of that call), or why none is needed.
 */
const FOREIGN: Record<string, string | { none: string }> = {
  num_inference_steps: 'steps',
  guidance_scale: 'guidanceScale',
  negative_prompt: 'negativePrompt',
  negative_prompt_2: 'negativePrompt2',
  prompt_2: 'prompt2',
  num_images_per_prompt: 'count',
  generator: 'seed',
  output_type: 'outputType',
  callback_on_step_end: 'onStep',
  callback: 'onStep',
  original_size: 'originalSize',
  target_size: 'targetSize',
  crops_coords_top_left: 'cropTopLeft',
  mask_image: 'mask',
  cross_attention_kwargs: { none: 'a LoRA\'s scale is set here by loadLoRA(file, { scale }), setLoRAScale, or per call with loras: { name: scale }' },
  device_map: 'device',
  use_auth_token: 'token',
  progress_callback: 'onProgress',
  torch_dtype: 'precision',
  dtype: 'precision',
  use_safetensors: { none: 'not needed: only safetensors files are read' },
  low_cpu_mem_usage: { none: 'not needed: weights are read from memory-mapped files, one tensor at a time' },
  local_files_only: { none: 'set HF_HUB_OFFLINE=1 to use only the local cache' },
  cache_dir: 'cacheDir'
}

/** Case and `_`/`-` ignored: `guidance_scale` is `guidanceScale`, `Steps` is `steps`. */
const fold = (s: string): string => s.toLowerCase().replace(/[_-]/g, '')

/** Edit distance with adjacent transpositions counted as one edit (`devcie` is one from `device`). */
function distance (a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => i === 0 ? j : j === 0 ? i : 0))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  }
  return d[a.length][b.length]
}

/**
 * The candidate `word` is most likely a misspelling of, or undefined: equal but for case and
 * underscores, else within an edit distance of 1 (2 for words of 6 letters or more).
 */
export function closest (word: string, candidates: readonly string[]): string | undefined {
  const w = fold(word)
  let best: string | undefined
  let bestD = w.length >= 6 ? 2 : 1
  for (const c of candidates) {
    const dist = distance(w, fold(c))
    if (dist === 0) return c
    if (dist <= bestD && (best === undefined || dist < bestD)) { best = c; bestD = dist }
  }
  return best
}

/**
 * Why `key` is not an option, in words: our name for another library's (`this library calls it
 * "steps"`), what to do instead, a near spelling, or the list of `known` names.
 */
export function unknownHint (key: string, known: readonly string[]): string {
  const hint = Object.hasOwn(FOREIGN, key) ? FOREIGN[key] : undefined
  if (typeof hint === 'object') return `: ${hint.none}`
  if (typeof hint === 'string' && known.includes(hint)) return `: this library calls it ${show(hint)}`
  const near = closest(key, known)
  if (near !== undefined) return `; did you mean ${show(near)}?`
  return ` (the options are ${known.join(', ')})`
}

function unknownKey (call: string, key: string, known: string[]): never {
  return bad(`${call}: unknown option ${show(key)}${unknownHint(key, known)}`)
}

/** Refuses unknown keys and values of the wrong type or out of range; null and undefined mean the default. */
function checkKeys (call: string, o: unknown, table: Record<string, Check>): void {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) bad(`${call}: options must be an object, got ${got(o)}`)
  const known = Object.keys(table)
  for (const [k, v] of Object.entries(o as object)) {
    if (!Object.hasOwn(table, k)) unknownKey(call, k, known)
    if (v !== undefined && v !== null && !table[k].ok(v)) bad(`${k} must be ${table[k].wants}, got ${got(v)}`)
  }
}

/** Checks fromPretrained's (or, with `config`, fromSingleFile's) options before anything is read. */
export function checkLoadOptions (call: 'fromPretrained' | 'fromSingleFile', o: unknown): void {
  checkKeys(call, o, call === 'fromSingleFile' ? SINGLE_FILE_OPTIONS : LOAD_OPTIONS)
}

/** Checks loadLoRA's options before anything is read or fetched. */
export function checkLoRAOptions (o: unknown): void {
  checkKeys('loadLoRA', o, LORA_OPTIONS)
}

/** Checks downloadFile's options before anything is fetched. */
export function checkDownloadFileOptions (o: unknown): void {
  checkKeys('downloadFile', o, DOWNLOAD_FILE_OPTIONS)
}

/**
 * The checks that need no model: every key known and of the right type and range, and the options
 * that go together (strength needs an image). The CLI runs them before it loads anything.
 */
export function checkGenerateOptions (prompt: unknown, o: GenerateOptions): void {
  if (typeof prompt !== 'string') bad(`prompt must be a string, got ${got(prompt)}`)
  checkKeys('generate', o, GENERATE_OPTIONS)
  if (o.strength !== undefined && o.image === undefined) bad('strength needs an image')
  if (o.mask !== undefined && o.image === undefined) bad('mask needs an image')
  const steps = o.steps ?? DEFAULT_STEPS
  const strength = strengthOf(o)
  if (o.image !== undefined && Math.min(Math.trunc(steps * strength), steps) < 1) bad(`steps x strength must be at least 1 (${steps} x ${strength} leaves no step to run)`)
  if (o.latents !== undefined && o.image !== undefined) bad('latents and image cannot be combined')
}

/** Every option checked, with the defaults filled in. `o` has had its nulls dropped. */
export function validateOptions (prompt: unknown, o: GenerateOptions, model: { defaultSize: Size, latentChannels: number }): Plan {
  checkGenerateOptions(prompt, o)
  const def = o.image === undefined ? model.defaultSize : null
  const width = o.width ?? def?.width ?? null
  const height = o.height ?? def?.height ?? null
  const steps = o.steps ?? DEFAULT_STEPS
  const guidance = o.guidanceScale ?? DEFAULT_GUIDANCE
  const count = o.count ?? 1
  const strength = strengthOf(o)
  if (o.latents !== undefined) {
    const n = count * model.latentChannels * (height! / 8) * (width! / 8)
    if (o.latents.length !== n) bad(`latents must hold ${count}x${model.latentChannels}x${height! / 8}x${width! / 8} = ${n} values, got ${o.latents.length}`)
    if (!o.latents.every(Number.isFinite)) bad('latents must be finite (no NaN or infinity)')
  }
  const seed = o.seed ?? randomInt(0, 2 ** 32)
  return { width, height, steps, guidance, seed, count, strength }
}
