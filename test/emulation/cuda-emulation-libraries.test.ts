// How the CUDA backend uses cuBLASLt and cuDNN beyond one call, in the CPU emulation: GEMMs that
// cuBLASLt has no algorithm for run on our own kernel (PG25_EMU_CUBLASLT=none: no algorithm at all;
// =no-bias: none with the bias epilogue), matching the CPU backend; the heuristic is asked only once the
// bias pointer it reads is set (the emulation reports misuse otherwise); one cuDNN handle and plan cache
// serves every engine on a GPU; and the benchmark hooks timeOp and randomTensor on both backends.
import test from 'ava'
import { Runtime } from '../../lib'
import { loadNative } from '../../lib/native'
import { compareOp, emulationReport, halfData, type OpCase } from '../support/emulation'

const cpu = Runtime.open('cpu', () => {})
const data = halfData(300)
const info = (): ReturnType<ReturnType<typeof loadNative>['runtimeInfo']> => loadNative().runtimeInfo()

// Linear layers (bias, residual, odd sizes), convolutions through im2col in both layouts (one GEMM per
// chunk with the bias in its epilogue, or batched GEMMs in NCHW), a batched matmul-free op for contrast.
const gemmCases: OpCase[] = [
  { op: 'linear', inputs: [[[7, 13], 1], [[5, 13], 0.3], [[5], 1]] },
  { op: 'linear', inputs: [[[2, 9, 16], 1], [[24, 16], 0.3], [[24], 1], [[2, 9, 24], 1]] },
  { op: 'linear', inputs: [[[33, 64], 1], [[40, 64], 0.2], null, [[33, 40], 1]] },
  { op: 'conv2d', inputs: [[[2, 4, 9, 7], 1], [[6, 4, 3, 3], 0.3], [[6], 1], [[2, 6, 9, 7], 1]], attrs: { stride: 1, pad: 1 } },
  { op: 'conv2d', inputs: [[[1, 8, 10, 11], 1], [[8, 8, 3, 3], 0.3], [[8], 1]], attrs: { stride: 2, pad: 1 } }
]

for (const knob of ['none', 'no-bias']) {
  test.serial(`PG25_EMU_CUBLASLT=${knob}: linears and im2col convolutions run on the fallback GEMM, as the CPU computes them`, async t => {
    process.env.PG25_EMU_CUBLASLT = knob
    process.env.PG25_DISABLE_CUDNN = '1'
    const before = info().gemmFallbacks ?? 0
    try {
      for (const layout of ['nchw', 'nhwc']) {
        process.env.PG25_CUDA_LAYOUT = layout
        const gpu = Runtime.open('cuda', () => {})
        delete process.env.PG25_CUDA_LAYOUT
        const prepare = async (x: any): Promise<any> => layout === 'nhwc' && x.shape.length === 4 ? await gpu.engine.op('to_layout', [x], { nhwc: 1 }) : x
        for (const c of gemmCases) await compareOp(t, c, cpu, gpu, data, prepare)
        gpu.dispose()
      }
    } finally {
      delete process.env.PG25_EMU_CUBLASLT
      delete process.env.PG25_DISABLE_CUDNN
    }
    const used = (info().gemmFallbacks ?? 0) - before
    // 'none' refuses every GEMM; 'no-bias' only those with a bias epilogue (linears with a bias, im2col rows).
    t.true(used >= (knob === 'none' ? gemmCases.length * 2 : 4), `${used} fallback GEMMs`)
  })
}

test.serial('the default cuBLASLt path uses no fallback GEMM', async t => {
  const before = info().gemmFallbacks ?? 0
  const gpu = Runtime.open('cuda', () => {})
  for (const c of gemmCases) await compareOp(t, c, cpu, gpu, data)
  gpu.dispose()
  t.is(info().gemmFallbacks, before)
})

test.serial('one cuDNN plan cache per GPU: a second engine builds no plan the first one built', async t => {
  const conv: OpCase = { op: 'conv2d', inputs: [[[2, 8, 12, 10], 1], [[16, 8, 3, 3], 0.3], [[16], 1]], attrs: { stride: 1, pad: 1 } }
  const first = Runtime.open('cuda', () => {})
  const p0 = info().cudnnPlans ?? 0
  await compareOp(t, conv, cpu, first, data)
  const p1 = info().cudnnPlans ?? 0
  t.true(p1 > p0, 'the first engine builds the plan')
  first.dispose()
  const second = Runtime.open('cuda', () => {})
  await compareOp(t, conv, cpu, second, data)
  t.is(info().cudnnPlans, p1, 'the second engine finds it built')
  second.dispose()
  t.true((info().cudnnPlanMs ?? -1) >= 0)
})

for (const device of ['cpu', 'cuda'] as const) {
  test.serial(`randomTensor and timeOp on ${device}`, async t => {
    const rt = device === 'cpu' ? cpu : Runtime.open('cuda', () => {})
    const a = await rt.engine.randomTensor([3, 5, 7], 1, 0.5)
    const b = await rt.engine.randomTensor([3, 5, 7], 1, 0.5)
    const c = await rt.engine.randomTensor([3, 5, 7], 2, 0.5)
    const [ha, hb, hc] = [a, b, c].map(x => rt.toHost(x))
    t.deepEqual(a.shape, [3, 5, 7])
    t.deepEqual(ha, hb, 'the same seed, the same values')
    t.notDeepEqual(ha, hc, 'another seed, other values')
    t.true(ha.every(v => v >= -0.5 && v <= 0.5), 'within [-scale, scale]')
    const mean = ha.reduce((s, v) => s + v, 0) / ha.length
    t.true(Math.abs(mean) < 0.1, `mean ${mean}`)
    t.true(new Set(ha).size > ha.length / 2, 'not constant')
    const r = await rt.engine.timeOp('add', [a, c], {}, 4)
    t.is(r.deviceMs.length, 4)
    t.is(r.wallMs.length, 4)
    t.true([...r.deviceMs, ...r.wallMs].every(ms => Number.isFinite(ms) && ms >= 0), JSON.stringify(r))
    await t.throwsAsync(async () => await rt.engine.timeOp('add', [a, c], {}, 0), { message: /reps must be 1 to 10000/ })
    await t.throwsAsync(async () => await rt.engine.timeOp('no_such_op', [a], {}, 1), { message: /no_such_op/ })
    await t.throwsAsync(async () => await rt.engine.randomTensor([3, 0], 1, 1), { message: /randomTensor: shape/ })
    for (const x of [a, b, c]) x.dispose()
    if (rt !== cpu) rt.dispose()
  })
}

test.after.always('the emulation saw no misuse (the heuristic asked after the bias pointer was set)', t => {
  t.deepEqual(emulationReport().misuse, [])
})
