// Memory estimates made before any work: a model's weights and default working set when loading,
// and each request's working set (latents, UNet activations at its size, the VAE's full-resolution
// tensors) when generating, so that what cannot fit is refused with PG25_OUT_OF_MEMORY instead of
// growing the process until the OOM killer ends it.
import { Pg25Error } from './errors'
import type { ComponentSource } from './model/model-dir'
import { componentManifest } from './native'

const GiB = 2 ** 30
export const fmtBytes = (bytes: number): string => `${(bytes / GiB).toFixed(2)} GiB`
export const fmtMiB = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`

/** What a request's working set depends on, read from the UNet and VAE configs. */
export interface CostModel {
  bytesPer: number
  latentChannels: number
  /** per UNet resolution level: channels, resnets per block, and whether it has transformers */
  levels: Array<{ channels: number, layers: number, cross: boolean }>
  /** the cross-attention keys and values one prompt token holds through a run: 2 x channels per transformer block */
  kvChannels: number
  /** copies of them: on the GPU a recorded CUDA graph keeps its own beside the run's */
  kvCopies: number
  /** VAE: its channel counts, highest resolution first, and the latent-to-image scale */
  vaeChannels: number[]
  scale: number
}

const list = (v: unknown, n: number, fallback: number): number[] =>
  Array.isArray(v) ? v.map(Number) : Array<number>(n).fill(typeof v === 'number' ? v : fallback)

export function costModel (sources: ComponentSource[], device: string): CostModel {
  const unet = JSON.parse(sources.find(s => s.name === 'unet')!.configText)
  const vae = JSON.parse(sources.find(s => s.name === 'vae')!.configText)
  const ch = (unet.block_out_channels as number[]).map(Number)
  const layers = list(unet.layers_per_block, ch.length, 2)
  const types = unet.down_block_types as string[]
  const depth = list(unet.transformer_layers_per_block, ch.length, 1)
  // CrossAttnDown blocks hold layers x depth transformer blocks, their up blocks (layers + 1) x depth, the mid block depth.
  const kvChannels = ch.reduce((s, c, i) => s + (types[i] === 'CrossAttnDownBlock2D' ? 2 * c * (2 * layers[i] + 1) * depth[i] : 0), 0) + 2 * ch[ch.length - 1] * depth[ch.length - 1]
  const vaeChannels = (vae.block_out_channels as number[]).map(Number)
  return {
    bytesPer: device.startsWith('cuda') ? 2 : 4,
    latentChannels: Number(unet.in_channels),
    levels: ch.map((c, i) => ({ channels: c, layers: layers[i], cross: types[i] === 'CrossAttnDownBlock2D' })),
    kvChannels,
    kvCopies: device.startsWith('cuda') ? 2 : 1,
    vaeChannels,
    scale: 2 ** (vaeChannels.length - 1)
  }
}

/**
 * Bytes a request needs at its peak: the larger of the UNet pass (its skip connections at every
 * level plus the widest level's working tensors: a transformer block holds its GEGLU feed-forward,
 * 8 x channels wide, beside its input, attention and output; and the prompt's cross-attention keys
 * and values, projected once per run, `tokens` of them: 77 per prompt chunk) and the VAE decoder (about three
 * tensors alive at full resolution, as wide as the last upsampler), plus the latents and the RGB
 * output. Calibrated on the tiny model's measured peaks (backend peakBytes): UNet within 5%, VAE
 * about 20% over, at 512 and 1024 px.
 */
export function requestBytes (m: CostModel, width: number, height: number, count: number, guided: boolean, tokens: number): number {
  const p = requestPhases(m, width, height, count, guided, tokens)
  return Math.max(p.unet, p.vae)
}

/** requestBytes' two phases apart: the denoising loop's peak and the VAE decode's (each with the latents and the output). */
export function requestPhases (m: CostModel, width: number, height: number, count: number, guided: boolean,
  tokens: number): { unet: number, vae: number } {
  const batch = count * (guided ? 2 : 1)
  const h = height / m.scale
  const w = width / m.scale
  let skips = 0
  let widest = 0
  m.levels.forEach((l, i) => {
    const px = Math.ceil(h / 2 ** i) * Math.ceil(w / 2 ** i)
    skips += (l.layers + 1) * l.channels * px
    widest = Math.max(widest, px * l.channels * (l.cross ? 16 : 4))
  })
  const unet = batch * (skips + widest + tokens * m.kvChannels * m.kvCopies)
  const fullResChannels = Math.max(m.vaeChannels[0], m.vaeChannels[Math.min(1, m.vaeChannels.length - 1)])
  const vae = 3 * count * fullResChannels * width * height
  const latents = 4 * batch * m.latentChannels * h * w
  const extra = latents * m.bytesPer + count * width * height * 3 * 5
  return { unet: unet * m.bytesPer + extra, vae: vae * m.bytesPer + extra }
}

/** Weights that can wait in a scratch file while another component runs: the text encoders' and the UNet's bytes. */
export interface Pageable { encoders: number, unet: number }

/**
 * Refuses a request whose working set exceeds `limit` bytes (the caller's limit or the free memory);
 * with `pageable` weights, it fits if the text encoders' room covers the UNet phase and theirs plus the
 * UNet's the VAE decode. Returns whether the run must page them out to fit.
 */
export function checkRequestMemory (m: CostModel, size: { width: number, height: number, count: number, guided: boolean, tokens?: number },
  device: string, limit: number, limitText: string, pageable?: Pageable): boolean {
  const p = requestPhases(m, size.width, size.height, size.count, size.guided, size.tokens ?? 77)
  const need = Math.max(p.unet, p.vae)
  if (need <= limit) return false
  if (pageable !== undefined && p.unet <= limit + pageable.encoders && p.vae <= limit + pageable.encoders + pageable.unet) return true
  const context = (size.tokens ?? 77) > 77 ? ` with a ${size.tokens}-token prompt` : ''
  const what = `${size.count} image(s) of ${size.width}x${size.height}${context}`
  const paged = pageable === undefined ? '' : ', even with the idle components\' weights paged out'
  throw new Pg25Error('PG25_OUT_OF_MEMORY', `${what} need about ${fmtBytes(need)} of working memory on the ${device}, but ${limitText}${paged}`)
}

/** Bytes the model takes at `weightBytes` per parameter: its parameters, and the VAE decoder's working set at the default size. */
export interface ModelBytes { params: number, weightBytes: number, working: number, needed: number, vaeParams: number }

export function modelBytes (sources: ComponentSource[], device: string, weightBytes: number): ModelBytes {
  const kinds = ['text_encoder', 'text_encoder_2', 'unet', 'vae'] as const
  let params = 0
  let vaeParams = 0
  for (const src of sources) {
    const kind = src.name === 'text_encoder_2' ? 'text_encoder' : src.name as 'text_encoder' | 'unet' | 'vae'
    if (!kinds.includes(src.name as typeof kinds[number])) continue
    const decl = componentManifest({ kind, className: src.className, configPath: src.configPath, configText: src.configText })
    for (const d of decl) {
      const n = d.shape.reduce((a, b) => a * b, 1)
      params += n
      if (kind === 'vae') vaeParams += n
    }
  }
  const bytesPer = device.startsWith('cuda') ? 2 : 4
  const unetCfg = JSON.parse(sources.find(s => s.name === 'unet')!.configText)
  const vaeCfg = JSON.parse(sources.find(s => s.name === 'vae')!.configText)
  const side = (unetCfg.sample_size ?? 128) * 2 ** ((vaeCfg.block_out_channels?.length ?? 4) - 1)
  const working = 6 * (vaeCfg.block_out_channels?.[0] ?? 128) * side * side * bytesPer
  return { params, weightBytes, working, needed: params * weightBytes + working, vaeParams }
}

/**
 * Refuses a model that cannot fit before any weight is read: parameters from the graphs the configs
 * describe (no allocation), at the backend's precision (`weightBytes`: 2 for CUDA and the CPU's
 * bf16/fp16 storage, 4 for float32), plus the VAE decoder's working set at the default size (its widest
 * full-resolution activations, about six alive at once). `free` is what the device has free
 * (Runtime.freeMemory: the GPU's memory on CUDA), used when no `limit` is given. `offload`: the idle
 * components' weights may be paged out during a run (CPU).
 */
export function checkModelMemory (sources: ComponentSource[], device: string, limit: number | undefined, free: number,
  weightBytes = device.startsWith('cuda') ? 2 : 4, offload = false): void {
  const m = modelBytes(sources, device, weightBytes)
  const { params, working } = m
  // With offload the decoder's working set has the paged-out components' room: the peak is the larger of
  // every weight (while loading) and the VAE's weights beside its working set.
  const needed = offload ? Math.max(params * weightBytes, m.vaeParams * weightBytes + working) : m.needed
  const available = limit ?? free
  if (needed > available) {
    throw new Pg25Error('PG25_OUT_OF_MEMORY', `the model needs about ${fmtBytes(needed)} on the ${device} (${params >= 1e9 ? `${(params / 1e9).toFixed(2)}B` : `${(params / 1e6).toFixed(1)}M`} parameters at ${weightBytes} bytes plus ${fmtBytes(working)} working memory) but ${limit !== undefined ? 'memoryLimit allows' : 'only'} ${fmtBytes(available)}${limit !== undefined ? '' : ' is available'}`)
  }
}

/**
 * The CPU backend's weight storage for `precision`: an explicit choice as it is; 'auto' is fp32 when
 * the float32 model fits `limit` (else the free memory), else half width with a one-line notice: bf16
 * where the processor has AVX512-BF16 (`bf16Dot`: its products run on vdpbf16ps, faster than float32),
 * else fp16 (widened to float32 as the GEMM packs it, and it keeps an fp16 file's bits).
 */
export function cpuPrecision (sources: ComponentSource[], precision: 'auto' | 'fp32' | 'bf16' | 'fp16', limit: number | undefined, free: number,
  bf16Dot: boolean, notice: (msg: string) => void): 'fp32' | 'bf16' | 'fp16' {
  if (precision !== 'auto') return precision
  const wide = modelBytes(sources, 'cpu', 4)
  const available = limit ?? free
  if (wide.needed <= available) return 'fp32'
  const half = bf16Dot ? 'bf16' : 'fp16'
  const narrow = modelBytes(sources, 'cpu', 2)
  notice(`@pg25/native: precision 'auto': the model needs about ${fmtBytes(wide.needed)} in float32 but ${limit !== undefined ? 'memoryLimit allows' : 'only'} ${fmtBytes(available)}${limit !== undefined ? '' : ' is available'}, so its weights are stored as ${half} (about ${fmtBytes(narrow.needed)}${bf16Dot ? ', computed with AVX512-BF16' : ''}); precision: 'fp32' keeps float32`)
  return half
}

/** Memory a LoRA may take: bytes, and how to say where the bound comes from. */
export interface Room { bytes: number, text: string }

/**
 * Refuses a LoRA whose tensors do not fit, from the header's shapes, before any is read: they are
 * held as float32 on the host (one copy; `pairs`: each module's up and down elements), and merging a
 * weight stacks its pair once more for a moment (the largest pair counts twice).
 */
export function checkLoRAMemory (file: string, tensors: number, pairs: number[], room: Room): void {
  const elements = pairs.reduce((a, b) => a + b, 0) + Math.max(0, ...pairs)
  const need = elements * 4 + tensors * 64
  if (need > room.bytes) {
    const what = `${file}: the LoRA's tensors need about ${fmtMiB(need)} of host memory as float32`
    throw new Pg25Error('PG25_OUT_OF_MEMORY', `${what}, but ${room.text}`)
  }
}
