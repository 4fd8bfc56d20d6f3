// Every op of the CUDA backend, run in the CPU emulation of CUDA, against the CPU backend on fresh
// random inputs over edge shapes. Device memory is poisoned (NaN) when allocated, so an output element
// a kernel never writes fails the comparison; the emulation's own checks (copy ranges, cuBLASLt
// alignment and extents, launch shapes, barriers) must report no misuse.
import test from 'ava'
import { Runtime } from '../../lib'
import type { NativeTensor } from '../../lib/native'
import { maxAbsDiff } from '../support/helpers'
import { compareOp, emulationReport, halfData, type OpCase } from '../support/emulation'

const cpu = Runtime.open('cpu', () => {})
const gpu = Runtime.open('cuda', () => {})
const data = halfData(1)
const compare = async (t: any, c: OpCase, dev = gpu): Promise<void> => await compareOp(t, c, cpu, dev, data)

const cases: OpCase[] = [
  { op: 'add', inputs: [[[1], 1], [[1], 1]] },
  { op: 'add', inputs: [[[2, 1, 33, 17], 1], [[2, 1, 33, 17], 1]] },
  { op: 'silu', inputs: [[[3, 5, 7], 3]] },
  { op: 'gelu', inputs: [[[1, 1, 1], 3]] },
  { op: 'gelu', inputs: [[[2, 7, 129], 3]] },
  { op: 'quick_gelu', inputs: [[[4, 77, 33], 3]] },
  { op: 'geglu', inputs: [[[2, 5, 38], 2]] },
  { op: 'geglu', inputs: [[[2, 9, 80], 2]] }, // 16-byte loads of both halves
  { op: 'geglu', inputs: [[[1, 3, 16], 2]] },
  { op: 'lincomb', inputs: [[[2, 4, 9, 7], 1]], attrs: { coefficients: [0.7] } },
  { op: 'lincomb', inputs: [[[2, 4, 9, 7], 1], [[2, 4, 9, 7], 1], [[2, 4, 9, 7], 1]], attrs: { coefficients: [1.5, -0.25, 3] } },
  { op: 'lincomb', inputs: Array(8).fill([[1, 4, 3, 5], 1]), attrs: { coefficients: [1, 2, 3, 4, -1, -2, -3, 0.5] } },
  { op: 'channel_affine', inputs: [[[2, 3, 5, 7], 1]], attrs: { scale: [0.5, -2, 3], shift: [1, 0, -0.25] } },
  { op: 'linear', inputs: [[[1, 1], 1], [[1, 1], 1]] },
  { op: 'linear', inputs: [[[3, 7, 33], 1], [[17, 33], 0.2], [[17], 1]] },
  { op: 'linear', inputs: [[[2, 77, 64], 1], [[129, 64], 0.2], null] },
  { op: 'linear', inputs: [[[5, 1280], 1], [[3, 1280], 0.05], [[3], 1]] },
  { op: 'linear', inputs: [[[2, 9, 40], 1], [[24, 40], 0.2], [[24], 1], [[2, 9, 24], 1]] }, // + residual (cuBLASLt's C)
  { op: 'linear', inputs: [[[7, 33], 1], [[5, 33], 0.2], null, [[7, 5], 1]] },
  { op: 'conv2d', inputs: [[[1, 3, 9, 11], 1], [[5, 3, 3, 3], 0.3], [[5], 1]], attrs: { stride: 1, pad: 1 } },
  { op: 'conv2d', inputs: [[[2, 4, 16, 15], 1], [[8, 4, 3, 3], 0.3], [[8], 1]], attrs: { stride: 2, pad: 1 } },
  { op: 'conv2d', inputs: [[[2, 6, 7, 5], 1], [[3, 6, 1, 1], 0.3], null], attrs: { stride: 1, pad: 0 } },
  { op: 'conv2d', inputs: [[[1, 2, 5, 5], 1], [[1, 2, 5, 5], 0.3], null], attrs: { stride: 1, pad: 0 } },
  { op: 'conv2d', inputs: [[[2, 4, 9, 7], 1], [[6, 4, 3, 3], 0.3], [[6], 1], [[2, 6, 9, 7], 1]], attrs: { stride: 1, pad: 1 } }, // + residual
  { op: 'conv2d', inputs: [[[1, 5, 6, 6], 1], [[3, 5, 1, 1], 0.3], null, [[1, 3, 6, 6], 1]], attrs: { stride: 1, pad: 0 } },
  { op: 'upsample2x_conv2d', inputs: [[[2, 4, 5, 7], 1], [[6, 4, 3, 3], 0.3], [[6], 1]], attrs: { pad: 1 } },
  { op: 'group_norm', inputs: [[[2, 32, 9, 7], 2], [[32], 1], [[32], 1]], attrs: { groups: 8, eps: 1e-5, silu: 1 } },
  { op: 'group_norm', inputs: [[[1, 64, 1, 1], 2], [[64], 1], [[64], 1]], attrs: { groups: 32, eps: 1e-6, silu: 0 } },
  { op: 'group_norm', inputs: [[[2, 6, 33, 31], 2], [[6], 1], [[6], 1]], attrs: { groups: 3, eps: 1e-6, silu: 0 } },
  // Groups of thousands of values: reduced in several chunks, with 16-byte loads (HW a multiple of 8).
  { op: 'group_norm', inputs: [[[1, 32, 64, 64], 2], [[32], 1], [[32], 1]], attrs: { groups: 32, eps: 1e-6, silu: 1 } },
  { op: 'group_norm', inputs: [[[2, 16, 48, 48], 2], [[16], 1], [[16], 1]], attrs: { groups: 4, eps: 1e-5, silu: 0 } },
  // With a time embedding [B, C] added to the channels first (a ResNet block's norm2): 16-byte loads, and one value at a time.
  { op: 'group_norm', inputs: [[[2, 32, 8, 8], 2], [[32], 1], [[32], 1], [[2, 32], 3]], attrs: { groups: 8, eps: 1e-5, silu: 1 } },
  { op: 'group_norm', inputs: [[[2, 6, 5, 7], 2], [[6], 1], [[6], 1], [[2, 6], 3]], attrs: { groups: 3, eps: 1e-6, silu: 0 } },
  { op: 'layer_norm', inputs: [[[3, 5, 33], 2], [[33], 1], [[33], 1]], attrs: { eps: 1e-5 } },
  { op: 'layer_norm', inputs: [[[1, 1, 1], 2], [[1], 1], [[1], 1]], attrs: { eps: 1e-5 } },
  { op: 'layer_norm', inputs: [[[2, 7, 1280], 2], [[1280], 1], [[1280], 1]], attrs: { eps: 1e-5 } },
  // Rows kept in registers: one and two 16-byte loads per thread, partly idle threads, the largest row;
  // then a row too long for registers (strided passes).
  { op: 'layer_norm', inputs: [[[3, 4, 640], 2], [[640], 1], [[640], 1]], attrs: { eps: 1e-5 } },
  { op: 'layer_norm', inputs: [[[2, 5, 24], 2], [[24], 1], [[24], 1]], attrs: { eps: 1e-6 } },
  { op: 'layer_norm', inputs: [[[2, 3, 2048], 3], [[2048], 1], [[2048], 1]], attrs: { eps: 1e-5 } },
  { op: 'layer_norm', inputs: [[[2, 3, 2056], 2], [[2056], 1], [[2056], 1]], attrs: { eps: 1e-5 } },
  // Projections sharing an input: one batched GEMM where the weights pack (x as every batch entry's
  // operand); weights or outputs whose size breaks 256-byte alignment run one GEMM each.
  { op: 'linears', inputs: [[[2, 64, 64], 1], [[64, 64], 0.2], [[64, 64], 0.2], [[64, 64], 0.2]] },
  { op: 'linears', inputs: [[[3, 7, 64], 1], [[64, 64], 0.2], [[64, 64], 0.2]] },
  { op: 'linears', inputs: [[[2, 9, 40], 1], [[24, 40], 0.2], [[24, 40], 0.2], [[24, 40], 0.2]] },
  { op: 'linears', inputs: [[[5, 32], 1], [[64, 32], 0.2]] },
  { op: 'pad2d', inputs: [[[1, 3, 5, 6], 1]], attrs: { left: 1, right: 2, top: 0, bottom: 3 } },
  { op: 'upsample_nearest', inputs: [[[2, 3, 5, 7], 1]], attrs: { oh: 10, ow: 14 } },
  { op: 'upsample_nearest', inputs: [[[1, 2, 3, 7], 1]], attrs: { oh: 7, ow: 9 } },
  { op: 'concat', inputs: [[[2, 3, 4], 1], [[1, 3, 4], 1]], attrs: { axis: 0 } },
  { op: 'concat', inputs: [[[2, 3, 4], 1], [[2, 5, 4], 1]], attrs: { axis: 1 } },
  { op: 'concat', inputs: [[[2, 77, 32], 1], [[2, 77, 64], 1]], attrs: { axis: -1 } },
  { op: 'slice0', inputs: [[[4, 3, 5], 1]], attrs: { start: 1, count: 2 } },
  { op: 'image_to_tokens', inputs: [[[2, 5, 3, 7], 1]] },
  { op: 'tokens_to_image', inputs: [[[2, 21, 5], 1]], attrs: { h: 3, w: 7 } },
  { op: 'embedding', inputs: [[[50, 12], 1]], attrs: { ids: [0, 49, 3, 3, 17, 1], batch: 2 } },
  { op: 'gather_rows', inputs: [[[3, 7, 5], 1]], attrs: { rows: [6, 0, 3] } }
]

// Attention over head widths 8..512 (tensor-core tiles of 64 and 128 dims, and the split-dim kernel above), cross and causal
// self-attention, batch 2, sequences that end inside a tile, several query blocks and key tiles.
for (const [B, Nq, Nk, C, heads, causal] of [[1, 1, 1, 40, 1, 0], [2, 64, 77, 80, 2, 0], [1, 77, 77, 64, 1, 1], [2, 33, 33, 160, 2, 1],
  [1, 16, 16, 256, 2, 0], [1, 64, 64, 512, 1, 0], [1, 300, 257, 128, 1, 0], [1, 7, 300, 320, 5, 0], [2, 150, 150, 192, 3, 1],
  [1, 130, 70, 96, 1, 0], [1, 5, 3, 8, 1, 0], [1, 129, 129, 128, 1, 1], [1, 40, 37, 512, 1, 0], [2, 20, 19, 260, 2, 1],
  // head dims that are not a multiple of 8: one value per load, tile by tile (the others move 16 bytes at a time, the next tile in flight)
  [2, 70, 145, 36, 3, 0], [1, 33, 100, 100, 1, 1],
  // head dim 64, 128 query rows a block (32 a warp): ragged last blocks, causal across block ends
  [1, 300, 300, 64, 1, 1], [2, 129, 200, 128, 2, 0], [1, 17, 400, 64, 1, 0]] as const) {
  cases.push({ op: 'attention', inputs: [[[B, Nq, C], 1], [[B, Nk, C], 1], [[B, Nk, C], 1]], attrs: { heads, causal } })
}

for (const c of cases) {
  test.serial(`${c.op} ${JSON.stringify(c.inputs.map(i => i?.[0] ?? null))} ${JSON.stringify(c.attrs ?? {})}`, async t => compare(t, c))
}

// Head dim 64 runs 32 query rows a warp by default; PG25_ATTENTION_ROWS=16 keeps the kernel of one row tile a warp.
test.serial('attention at head dim 64 with one row tile a warp (PG25_ATTENTION_ROWS=16)', async t => {
  process.env.PG25_ATTENTION_ROWS = '16'
  try {
    for (const [B, Nq, Nk, C, heads, causal] of [[2, 64, 77, 128, 2, 0], [1, 77, 77, 64, 1, 1], [1, 200, 130, 64, 1, 0]] as const) {
      await compare(t, { op: 'attention', inputs: [[[B, Nq, C], 1], [[B, Nk, C], 1], [[B, Nk, C], 1]], attrs: { heads, causal } })
    }
  } finally {
    delete process.env.PG25_ATTENTION_ROWS
  }
})

test.serial('a convolution in several im2col chunks keeps every cuBLASLt operand 16-byte aligned', async t => {
  // K = 1624 * 9 columns per pixel: the 32 MB column budget splits the 48x48 output pixels into
  // chunks (2295 columns each when the chunk was not rounded), so later chunks start at an offset.
  // The im2col path (the one without cuDNN) is forced for this engine.
  process.env.PG25_DISABLE_CUDNN = '1'
  const im2col = Runtime.open('cuda', () => {})
  delete process.env.PG25_DISABLE_CUDNN
  emulationReport(true)
  await compare(t, { op: 'conv2d', inputs: [[[1, 1624, 48, 48], 1], [[2, 1624, 3, 3], 0.02], [[2], 1]], attrs: { stride: 1, pad: 1 }, tol: 3e-3 }, im2col)
  im2col.dispose()
  const r = emulationReport()
  t.true(r.matmuls >= 2, `${r.matmuls} matmuls`)
  t.true(r.minMatmulAlignment >= 16, `smallest declared alignment ${r.minMatmulAlignment}`)
})

test.serial('linears on packed weights is one batched GEMM; on weights that do not pack, one GEMM each', async t => {
  for (const [x, w, n, matmuls] of [[[2, 64, 64], [64, 64], 3, 1], [[2, 9, 40], [24, 40], 3, 3], [[3, 7, 64], [64, 64], 2, 2]] as const) {
    const ts = [gpu.fromHost(data([...x]), [...x]), ...Array.from({ length: n }, () => gpu.fromHost(data([...w], 0.2), [...w]))]
    emulationReport(true)
    const y = await gpu.engine.op('linears', ts, {})
    t.is(emulationReport().matmuls, matmuls, `x ${JSON.stringify(x)}, ${n} weights ${JSON.stringify(w)}`)
    for (const v of [...ts, y]) v.dispose()
  }
  // A cuBLASLt with no algorithm for a repeated operand: the projections run one by one, same values.
  process.env.PG25_EMU_CUBLASLT = 'no-broadcast'
  const plain = Runtime.open('cuda', () => {})
  emulationReport(true)
  await compare(t, { op: 'linears', inputs: [[[2, 64, 64], 1], [[64, 64], 0.2], [[64, 64], 0.2], [[64, 64], 0.2]] }, plain)
  t.is(emulationReport().matmuls, 3)
  plain.dispose()
  delete process.env.PG25_EMU_CUBLASLT
  t.deepEqual(emulationReport().misuse, [])
})

test.serial('previews and 8-bit images match the CPU backend byte for byte (within one level)', async t => {
  const x = data([2, 4, 5, 3], 0.8)
  const m = new Float32Array([0.3, -0.2, 0.1, 0.05, 0.2, 0.3, -0.1, 0.1, -0.25, 0.1, 0.4, 0.2])
  const bias = new Float32Array([0.1, -0.1, 0.05])
  const [pc, pg] = [cpu, gpu].map(rt => {
    const tx = rt.fromHost(x, [2, 4, 5, 3]); const p = rt.engine.latentPreview(tx, m, bias); tx.dispose(); return p
  })
  t.is(pc.length, 2 * 15 * 3)
  t.true(maxAbsDiff(pc, pg) <= 1, `preview ${maxAbsDiff(pc, pg)}`)
  const img = data([2, 3, 6, 5], 0.7)
  const [ic, ig] = await Promise.all([cpu, gpu].map(async rt => {
    const ti = rt.fromHost(img, [2, 3, 6, 5]); const b = await rt.engine.toRGB8(ti); ti.dispose(); return b
  }))
  t.is(ic.length, 2 * 30 * 3)
  t.true(maxAbsDiff(ic, ig) <= 1, `image ${maxAbsDiff(ic, ig)}`)
})

test.serial('bad op arguments are refused by name, on both backends', async t => {
  for (const rt of [cpu, gpu]) {
    const x = rt.fromHost(new Float32Array(6), [2, 3])
    const w = rt.fromHost(new Float32Array(8), [2, 4])
    const e1 = await t.throwsAsync(rt.engine.op('linear', [x, w], {}))
    t.is((e1 as any).code, 'PG25_INVALID_ARGUMENT')
    t.regex(e1!.message, /op linear: w \[2, 4\] does not take x \[2, 3\]/)
    const e2 = await t.throwsAsync(rt.engine.op('attention', [x, x, x], { heads: 1 }))
    t.regex(e2!.message, /op attention: q must have rank 3/)
    const e3 = await t.throwsAsync(rt.engine.op('no_such_op', [x], {}))
    t.regex(e3!.message, /unknown op "no_such_op"/)
    x.dispose()
    w.dispose()
  }
})

test.after.always('the emulation saw no misuse, and disposing the engine leaves no device memory', t => {
  cpu.dispose()
  gpu.dispose()
  const r = emulationReport()
  t.deepEqual(r.misuse, [])
  t.is(r.queued, 0)
  t.is(r.liveAllocations, 0)
})

export type { NativeTensor }
