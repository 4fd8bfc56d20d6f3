// The UNet's conditioning from weighted, chunked prompts: each chunk through both text encoders, the
// weights applied to their penultimate hidden states the way the style's reference applies them, the
// chunks joined along the token axis, the pooled embedding from the first chunk.
import type { NativeTensor } from '../native'
import type { TextEncoderModel } from '../model/components'
import { release, type Runtime } from '../runtime'
import type { CLIPTokenizer } from '../tokenizer/clip-tokenizer'
import { emptyChunk, promptChunks, type Chunk } from './chunk'
import { joinBatch } from './plain'

const TOKENS = 77

/** One prompt's chunks for each encoder (the same number: the shorter padded with empty chunks). */
export interface ChunkedPrompt { l: Chunk[], g: Chunk[] }

export interface StyledPlan {
  style: 'a1111' | 'comfy'
  pos: ChunkedPrompt
  /** absent when the negative half is zeros (no negative prompt) or there is no guidance */
  neg?: ChunkedPrompt
  /** the context length the UNet attends to: chunks x 77 */
  tokens: number
  empty: ChunkedPrompt
}

const gcd = (a: number, b: number): number => b === 0 ? a : gcd(b, a % b)

/** Both encoders' chunks of a prompt pair, the shorter padded with empty chunks (as ComfyUI pads text_l and text_g). */
function chunkPair (toks: [CLIPTokenizer, CLIPTokenizer], style: 'a1111' | 'comfy', text1: string, text2: string,
  what: [string, string]): ChunkedPrompt {
  const l = promptChunks(toks[0], text1, style, toks[0].eosId, what[0])
  const g = promptChunks(toks[1], text2, style, 0, what[1])
  while (l.length < g.length) l.push(emptyChunk(toks[0], toks[0].eosId))
  while (g.length < l.length) g.push(emptyChunk(toks[1], 0))
  return { l, g }
}

/**
 * Chunks every prompt of a call. The positive and negative halves get one length: A1111 pads the
 * shorter with the empty prompt's chunks (its "pad prompt/negative prompt" setting), ComfyUI repeats
 * each to their least common multiple (what its sampler does; attention over a repeated context is
 * unchanged).
 */
export function planStyled (toks: [CLIPTokenizer, CLIPTokenizer], style: 'a1111' | 'comfy',
  texts: { prompt: string, prompt2: string, neg?: string, neg2?: string }): StyledPlan {
  const pos = chunkPair(toks, style, texts.prompt, texts.prompt2, ['prompt', 'prompt2'])
  const neg = texts.neg === undefined ? undefined : chunkPair(toks, style, texts.neg, texts.neg2!, ['negativePrompt', 'negativePrompt2'])
  const n = pos.l.length
  const m = neg?.l.length ?? 1
  const chunks = style === 'a1111' ? Math.max(n, m) : n * m / gcd(n, m)
  const empty = { l: [emptyChunk(toks[0], toks[0].eosId)], g: [emptyChunk(toks[1], 0)] }
  return { style, pos, neg, tokens: chunks * TOKENS, empty }
}

/** Rows of [77, dim] from a host array [rows, 77, dim]. */
const rowsOf = (data: Float32Array, dim: number): Float32Array[] =>
  Array.from({ length: data.length / (TOKENS * dim) }, (_, r) => data.subarray(r * TOKENS * dim, (r + 1) * TOKENS * dim))

function mean (z: Float32Array): number {
  let s = 0
  for (const v of z) s += v
  return s / z.length
}

/** A1111's "Original" emphasis: z x weight per token, then rescaled to z's former mean. */
function weighA1111 (z: Float32Array, weights: number[], dim: number): Float32Array {
  if (weights.every(w => w === 1)) return z
  const before = mean(z)
  const out = new Float32Array(z.length)
  for (let t = 0; t < TOKENS; t++) {
    const w = Math.fround(weights[t])
    for (let c = 0; c < dim; c++) out[t * dim + c] = Math.fround(z[t * dim + c] * w)
  }
  const k = Math.fround(before / mean(out))
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(out[i] * k)
  return out
}

/** ComfyUI: z = (z - z_empty) x w + z_empty on tokens weighted other than 1, z_empty the empty prompt's. */
function weighComfy (z: Float32Array, weights: number[], zEmpty: Float32Array, dim: number): Float32Array {
  const out = Float32Array.from(z)
  for (let t = 0; t < TOKENS; t++) {
    const w = weights[t]
    if (w === 1) continue
    const wf = Math.fround(w)
    for (let c = 0; c < dim; c++) {
      const i = t * dim + c
      out[i] = Math.fround(Math.fround(Math.fround(z[i] - zEmpty[i]) * wf) + zEmpty[i])
    }
  }
  return out
}

interface Encoded { z: Float32Array[], pooled?: Float32Array[] }

/** One encoder over a list of chunks, in one batch. */
async function encodeChunks (rt: Runtime, enc: TextEncoderModel, chunks: Chunk[], signal: AbortSignal):
Promise<Encoded & { dim: number, pdim: number }> {
  const { penultimate, pooled } = await enc.encode(chunks.map(c => c.ids), signal)
  try {
    const dim = penultimate.shape[2]
    const z = rowsOf(rt.toHost(penultimate), dim)
    if (pooled === undefined) return { z, dim, pdim: 0 }
    const pdim = pooled.shape[1]
    const p = rt.toHost(pooled)
    return { z, pooled: Array.from({ length: chunks.length }, (_, r) => p.subarray(r * pdim, (r + 1) * pdim)), dim, pdim }
  } finally {
    penultimate.dispose()
    pooled?.dispose()
  }
}

/** One prompt's weighted embeddings per chunk ([77, dim] each) for one encoder. */
function weighPrompt (style: 'a1111' | 'comfy', z: Float32Array[], chunks: Chunk[], zEmpty: Float32Array, dim: number): Float32Array[] {
  if (style === 'a1111') return z.map((zi, i) => weighA1111(zi, chunks[i].weights, dim))
  // ComfyUI weighs only when some token of the prompt (any chunk) has a weight other than 1.
  if (chunks.every(c => c.weights.every(w => w === 1))) return z
  return z.map((zi, i) => weighComfy(zi, chunks[i].weights, zEmpty, dim))
}

/**
 * The conditioning of a styled plan: embeds [B, tokens, dimL + dimG] and pooled [B, pdim] for
 * B = count (no guidance) or 2 x count laid out [negative x count, prompt x count]; without a negative
 * prompt the negative half is zeros (force_zeros_for_empty_prompt).
 */
export async function encodeStyled (rt: Runtime, encoders: [TextEncoderModel, TextEncoderModel], plan: StyledPlan, guided: boolean,
  count: number, signal: AbortSignal): Promise<{ embeds: NativeTensor, pooled: NativeTensor }> {
  const prompts = [plan.pos, ...(plan.neg === undefined ? [] : [plan.neg]), plan.empty]
  const [a, b] = await Promise.all([
    encodeChunks(rt, encoders[0], prompts.flatMap(p => p.l), signal),
    encodeChunks(rt, encoders[1], prompts.flatMap(p => p.g), signal)
  ])
  const dim = a.dim + b.dim
  const emptyL = a.z[a.z.length - 1]
  const emptyG = b.z[b.z.length - 1]
  // Each prompt as its chunks of [77, dimL + dimG], and its pooled embedding from the first chunk.
  let at = 0
  const joined = prompts.map(p => {
    const zl = weighPrompt(plan.style, a.z.slice(at, at + p.l.length), p.l, emptyL, a.dim)
    const zg = weighPrompt(plan.style, b.z.slice(at, at + p.g.length), p.g, emptyG, b.dim)
    const pooled = b.pooled![at]
    at += p.l.length
    const chunks = zl.map((l, i) => {
      const out = new Float32Array(TOKENS * dim)
      for (let t = 0; t < TOKENS; t++) {
        out.set(l.subarray(t * a.dim, (t + 1) * a.dim), t * dim)
        out.set(zg[i].subarray(t * b.dim, (t + 1) * b.dim), t * dim + a.dim)
      }
      return out
    })
    return { chunks, pooled }
  })
  const emptyChunk = joined[joined.length - 1].chunks[0]
  const n = plan.tokens / TOKENS
  // A prompt's chunks brought to n: A1111 pads with the empty prompt, ComfyUI repeats the whole.
  const fit = (chunks: Float32Array[]): Float32Array[] => plan.style === 'a1111' ?
      [...chunks, ...Array<Float32Array>(n - chunks.length).fill(emptyChunk)] :
      Array.from({ length: n }, (_, i) => chunks[i % chunks.length])
  const halves: Array<{ chunks: Float32Array[], pooled: Float32Array }> = []
  if (guided) {
    if (plan.neg === undefined) {
      const zero = new Float32Array(TOKENS * dim)
      halves.push({ chunks: fit([zero]), pooled: new Float32Array(b.pdim) })
    } else halves.push({ chunks: fit(joined[1].chunks), pooled: joined[1].pooled })
  }
  halves.push({ chunks: fit(joined[0].chunks), pooled: joined[0].pooled })
  // Each half once on the host, then repeated count times on the device (as 'plain' lays them out).
  const tensors = halves.flatMap(h => {
    const embeds = new Float32Array(n * TOKENS * dim)
    h.chunks.forEach((c, i) => embeds.set(c, i * TOKENS * dim))
    return [rt.fromHost(embeds, [1, n * TOKENS, dim]), rt.fromHost(h.pooled, [1, b.pdim])]
  })
  try {
    const repeat = (k: number): NativeTensor[] => tensors.filter((_, i) => i % 2 === k).flatMap(t => Array<NativeTensor>(count).fill(t))
    return { embeds: joinBatch(rt, repeat(0)), pooled: joinBatch(rt, repeat(1)) }
  } finally {
    release(...tensors)
  }
}
