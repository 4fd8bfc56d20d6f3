// The op cases of test/native/cpu-kernels.test.ts, with their inputs (deterministic) and a float64 reference
// computed here in the plainest way, independent of the backend's kernels.
import { TorchGenerator } from '../../lib'

export interface Case { name: string, op: string, inputs: Array<[number[], number] | null>, attrs?: Record<string, any> }

// Shapes that leave partial tiles in every kernel (14x32, 6x16, 4x8), several K blocks, batch 2.
export const CASES: Case[] = [
  { name: 'linear', op: 'linear', inputs: [[[2, 37, 129], 1], [[67, 129], 0.2], [[67], 1]] },
  { name: 'linear+residual', op: 'linear', inputs: [[[45, 300], 1], [[33, 300], 0.1], null, [[45, 33], 1]] },
  { name: 'linear 1x1', op: 'linear', inputs: [[[1, 1], 1], [[1, 1], 1], null] },
  { name: 'linear K 601', op: 'linear', inputs: [[[3, 20, 601], 1], [[45, 601], 0.1], [[45], 1]] },
  { name: 'conv3x3', op: 'conv2d', inputs: [[[2, 13, 17, 19], 1], [[11, 13, 3, 3], 0.2], [[11], 1]], attrs: { stride: 1, pad: 1 } },
  { name: 'conv3x3 stride 2', op: 'conv2d', inputs: [[[1, 9, 16, 15], 1], [[20, 9, 3, 3], 0.2], [[20], 1]], attrs: { stride: 2, pad: 1 } },
  { name: 'upsample2x+conv3x3', op: 'upsample2x_conv2d', inputs: [[[2, 13, 9, 10], 1], [[11, 13, 3, 3], 0.2], [[11], 1]], attrs: { pad: 1 } },
  // K 360 (two K blocks, the second starting mid-channel at tap (28, 1, 1)) over 37 columns a row: the bf16
  // kernel's direct pair packing (native/cpu/conv_pack_bf16.cc) cuts pieces at panel borders and image edges.
  { name: 'conv3x3 K 360', op: 'conv2d', inputs: [[[1, 40, 11, 37], 1], [[20, 40, 3, 3], 0.1], [[20], 1]], attrs: { stride: 1, pad: 1 } },
  { name: 'upsample2x+conv3x3 K 333', op: 'upsample2x_conv2d', inputs: [[[1, 37, 7, 19], 1], [[15, 37, 3, 3], 0.1], [[15], 1]], attrs: { pad: 1 } },
  { name: 'conv1x1+residual', op: 'conv2d', inputs: [[[2, 24, 7, 9], 1], [[17, 24, 1, 1], 0.2], [[17], 1], [[2, 17, 7, 9], 1]], attrs: { stride: 1, pad: 0 } },
  { name: 'group_norm+silu', op: 'group_norm', inputs: [[[2, 32, 5, 7], 2], [[32], 1], [[32], 1]], attrs: { groups: 8, eps: 1e-5, silu: true } },
  { name: 'layer_norm', op: 'layer_norm', inputs: [[[3, 5, 77], 2], [[77], 1], [[77], 1]], attrs: { eps: 1e-5 } },
  { name: 'geglu', op: 'geglu', inputs: [[[2, 9, 2 * 37], 2]] },
  { name: 'silu', op: 'silu', inputs: [[[3, 101], 4]] },
  { name: 'gelu', op: 'gelu', inputs: [[[3, 101], 4]] },
  { name: 'quick_gelu', op: 'quick_gelu', inputs: [[[3, 101], 4]] },
  { name: 'attention', op: 'attention', inputs: [[[2, 70, 64], 1], [[2, 77, 64], 1], [[2, 77, 64], 1]], attrs: { heads: 2, causal: false } },
  { name: 'attention causal', op: 'attention', inputs: [[[1, 33, 48], 1], [[1, 33, 48], 1], [[1, 33, 48], 1]], attrs: { heads: 3, causal: true } }
]

/**
 * The products whose second input is a weight, run again with it stored at half width (setWeightPrecision):
 * 'bf16' and 'fp16' storage, and on a processor with AVX512-BF16 the bf16 kernel, whose other operand is
 * rounded to bf16 too (`bf16Activations`).
 */
export const HALF_CASES = CASES.filter(c => c.op === 'linear' || c.op.endsWith('conv2d'))
/** Attention under precision 'bf16': on the bf16 kernel its two products round their operands to bf16 too. */
export const BF16_ATTENTION_CASES = CASES.filter(c => c.op === 'attention')
export type HalfKind = 'bf16' | 'fp16'

/** `v` (a float32 value) rounded to bf16, to nearest even. */
export function roundBf16 (v: number): number {
  const f = new Float32Array([v]), u = new Uint32Array(f.buffer)
  u[0] = (u[0] + 0x7fff + ((u[0] >>> 16) & 1)) & 0xffff0000
  return f[0]
}

/** `v` rounded to IEEE float16, to nearest even (the weights here stay far from its range's ends). */
export function roundF16 (v: number): number {
  const a = Math.abs(Math.fround(v))
  if (a === 0) return 0
  const quantum = 2 ** (Math.max(Math.floor(Math.log2(a)), -14) - 10)
  const q = a / quantum, r = Math.floor(q)
  const n = q - r > 0.5 || (q - r === 0.5 && r % 2 === 1) ? r + 1 : r
  return Math.sign(v) * n * quantum
}

/** The float64 reference of a half case: the weight rounded as stored, the input too where the bf16 kernel rounds it. */
export function halfReference (c: Case, kind: HalfKind, bf16Activations: boolean): Float64Array {
  const round = kind === 'bf16' ? roundBf16 : roundF16
  return reference(c, ins => {
    ins[1]!.data = ins[1]!.data.map(round)
    if (bf16Activations && kind === 'bf16') ins[0]!.data = ins[0]!.data.map(roundBf16)
  })
}

export function inputsOf (c: Case): Array<{ shape: number[], data: Float32Array } | null> {
  return c.inputs.map((i, k) => {
    if (i === null) return null
    const [shape, scale] = i
    return { shape, data: new TorchGenerator(1000 + k * 17 + c.name.length).randn(shape).map(v => v * scale) }
  })
}

const erf = (x: number): number => { // Abramowitz & Stegun 7.1.26 is too coarse for a reference: series/continued fraction
  const t = Math.abs(x)
  if (t < 3) {
    let s = 0; let term = t
    for (let n = 0; n < 200; n++) { s += term / (2 * n + 1); term *= -t * t / (n + 1) }
    return Math.sign(x) * 2 / Math.sqrt(Math.PI) * s
  }
  return Math.sign(x) * (1 - Math.exp(-t * t) / (t * Math.sqrt(Math.PI)) * (1 - 1 / (2 * t * t) + 3 / (4 * t ** 4)))
}
const silu = (v: number): number => v / (1 + Math.exp(-v))

export function reference (c: Case, adjust?: (ins: ReturnType<typeof inputsOf>) => void): Float64Array {
  const ins = inputsOf(c)
  adjust?.(ins)
  const x = ins[0]!
  const a = c.attrs ?? {}
  switch (c.op) {
    case 'linear': {
      const [w, b, r] = [ins[1]!, ins[2], ins[3]]
      const K = x.shape.at(-1)!, N = w.shape[0], M = x.data.length / K
      const y = new Float64Array(M * N)
      for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
        let s = b ? b.data[n] : 0
        for (let k = 0; k < K; k++) s += x.data[m * K + k] * w.data[n * K + k]
        y[m * N + n] = s + (r ? r.data[m * N + n] : 0)
      }
      return y
    }
    case 'upsample2x_conv2d': { // the convolution of the nearest 2x upsampling, made here
      const [B, C, H, W] = x.shape
      const up = new Float32Array(B * C * 4 * H * W)
      for (let i = 0; i < up.length; i++) {
        const xx = i % (2 * W), yy = Math.floor(i / (2 * W)) % (2 * H), bc = Math.floor(i / (4 * H * W))
        up[i] = x.data[(bc * H + (yy >> 1)) * W + (xx >> 1)]
      }
      return reference({ ...c, op: 'conv2d', attrs: { stride: 1, pad: a.pad } }, r => { adjust?.(r); r[0] = { shape: [B, C, 2 * H, 2 * W], data: up } })
    }
    case 'conv2d': {
      const [w, b, r] = [ins[1]!, ins[2], ins[3]]
      const [B, C, H, W] = x.shape, [O, , R, S] = w.shape, st = a.stride, p = a.pad
      const Ho = Math.floor((H + 2 * p - R) / st) + 1, Wo = Math.floor((W + 2 * p - S) / st) + 1
      const y = new Float64Array(B * O * Ho * Wo)
      for (let n = 0; n < B; n++) for (let o = 0; o < O; o++) for (let i = 0; i < Ho; i++) for (let j = 0; j < Wo; j++) {
        let s = b ? b.data[o] : 0
        for (let ci = 0; ci < C; ci++) for (let u = 0; u < R; u++) for (let v = 0; v < S; v++) {
          const hi = i * st - p + u, wi = j * st - p + v
          if (hi >= 0 && hi < H && wi >= 0 && wi < W) s += x.data[((n * C + ci) * H + hi) * W + wi] * w.data[((o * C + ci) * R + u) * S + v]
        }
        const idx = ((n * O + o) * Ho + i) * Wo + j
        y[idx] = s + (r ? r.data[idx] : 0)
      }
      return y
    }
    case 'group_norm': {
      const [g, bt] = [ins[1]!, ins[2]!]
      const [B, C] = x.shape, HW = x.data.length / (B * C), G = a.groups, cg = C / G
      const y = new Float64Array(x.data.length)
      for (let n = 0; n < B; n++) for (let gi = 0; gi < G; gi++) {
        const base = (n * C + gi * cg) * HW, len = cg * HW
        let mean = 0; for (let i = 0; i < len; i++) mean += x.data[base + i]; mean /= len
        let v = 0; for (let i = 0; i < len; i++) v += (x.data[base + i] - mean) ** 2; v /= len
        for (let i = 0; i < len; i++) {
          const ch = gi * cg + Math.floor(i / HW)
          const z = (x.data[base + i] - mean) / Math.sqrt(v + a.eps) * g.data[ch] + bt.data[ch]
          y[base + i] = a.silu ? silu(z) : z
        }
      }
      return y
    }
    case 'layer_norm': {
      const [g, bt] = [ins[1]!, ins[2]!]
      const C = x.shape.at(-1)!, y = new Float64Array(x.data.length)
      for (let r0 = 0; r0 < x.data.length; r0 += C) {
        let mean = 0; for (let i = 0; i < C; i++) mean += x.data[r0 + i]; mean /= C
        let v = 0; for (let i = 0; i < C; i++) v += (x.data[r0 + i] - mean) ** 2; v /= C
        for (let i = 0; i < C; i++) y[r0 + i] = (x.data[r0 + i] - mean) / Math.sqrt(v + a.eps) * g.data[i] + bt.data[i]
      }
      return y
    }
    case 'geglu': {
      const n2 = x.shape.at(-1)!, n = n2 / 2, rows = x.data.length / n2, y = new Float64Array(rows * n)
      for (let r0 = 0; r0 < rows; r0++) for (let j = 0; j < n; j++) {
        const gt = x.data[r0 * n2 + n + j]
        y[r0 * n + j] = x.data[r0 * n2 + j] * 0.5 * gt * (1 + erf(gt / Math.SQRT2))
      }
      return y
    }
    case 'silu': return Float64Array.from(x.data, silu)
    case 'gelu': return Float64Array.from(x.data, v => 0.5 * v * (1 + erf(v / Math.SQRT2)))
    case 'quick_gelu': return Float64Array.from(x.data, v => v / (1 + Math.exp(-1.702 * v)))
    case 'attention': {
      const [k, v] = [ins[1]!, ins[2]!]
      const [B, Nq, Cq] = x.shape, Nk = k.shape[1], h = a.heads, d = Cq / h
      const y = new Float64Array(x.data.length)
      for (let b = 0; b < B; b++) for (let hi = 0; hi < h; hi++) for (let i = 0; i < Nq; i++) {
        const s: number[] = []
        for (let j = 0; j < Nk; j++) {
          if (a.causal && j > i) { s.push(-Infinity); continue }
          let dot = 0
          for (let e = 0; e < d; e++) dot += x.data[(b * Nq + i) * Cq + hi * d + e] * k.data[(b * Nk + j) * Cq + hi * d + e]
          s.push(dot / Math.sqrt(d))
        }
        const mx = Math.max(...s), ex = s.map(z => Math.exp(z - mx)), sum = ex.reduce((p, q) => p + q, 0)
        for (let e = 0; e < d; e++) {
          let acc = 0
          for (let j = 0; j < Nk; j++) acc += ex[j] / sum * v.data[(b * Nk + j) * Cq + hi * d + e]
          y[(b * Nq + i) * Cq + hi * d + e] = acc
        }
      }
      return y
    }
  }
  throw new Error(`no reference for ${c.op}`)
}
