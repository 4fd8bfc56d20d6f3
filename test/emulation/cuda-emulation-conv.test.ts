// Convolutions through cuDNN 9's graph API, run in the CPU emulation (native/cuda/emu/cudnn.cc: our
// calls exercised unchanged, attributes and finalization checked as the library defines them), against
// the CPU backend: 3x3 pad 1, stride 2, 1x1, 5x5, odd sizes, batch 2, with and without bias and
// residual, fp16 and bf16 storage. Each case runs four ways: the fused graph (convolution + bias +
// residual in one cuDNN plan), the convolution alone in cuDNN with our epilogue (engines that fuse
// nothing: PG25_EMU_CUDNN=conv-only), no cuDNN plan for any shape (PG25_EMU_CUDNN=none) and im2col
// forced (PG25_DISABLE_CUDNN=1); then the first three again with NHWC activations and KRSC kernels (the
// GPU's layout: cuDNN reads them through strides; without a plan, im2col rows and one GEMM with the bias
// and residual in its epilogue). The emulation's counters tell which path ran: the fused graph issues no
// kernel and no cuBLASLt matmul; im2col issues matmuls. Without cuDNN a one-line notice names it.
import test from 'ava'
import { Runtime, TorchGenerator } from '../../lib'
import { relativeError } from '../support/helpers'
import { emulationReport, toHalf } from '../support/emulation'

interface Case { x: number[], w: number[], bias: boolean, residual: boolean, stride: number, pad: number, wide?: boolean }
const cases: Case[] = [
  { x: [1, 3, 9, 11], w: [5, 3, 3, 3], bias: true, residual: false, stride: 1, pad: 1 },
  { x: [2, 8, 10, 9], w: [16, 8, 3, 3], bias: true, residual: false, stride: 1, pad: 1 }, // channels of 8: the workspace engine
  { x: [2, 4, 16, 15], w: [8, 4, 3, 3], bias: true, residual: false, stride: 2, pad: 1 },
  { x: [1, 8, 9, 7], w: [8, 8, 3, 3], bias: false, residual: false, stride: 2, pad: 1 },
  { x: [2, 6, 7, 5], w: [3, 6, 1, 1], bias: false, residual: false, stride: 1, pad: 0 },
  { x: [1, 16, 6, 6], w: [8, 16, 1, 1], bias: true, residual: true, stride: 1, pad: 0 },
  { x: [2, 4, 9, 7], w: [6, 4, 3, 3], bias: true, residual: true, stride: 1, pad: 1 },
  { x: [1, 5, 6, 6], w: [3, 5, 3, 3], bias: false, residual: true, stride: 1, pad: 1 },
  { x: [1, 2, 5, 5], w: [1, 2, 5, 5], bias: true, residual: false, stride: 1, pad: 0 },
  { x: [1, 3, 1, 1], w: [2, 3, 1, 1], bias: true, residual: false, stride: 1, pad: 0 },
  { x: [2, 8, 9, 7], w: [8, 8, 3, 3], bias: true, residual: true, stride: 1, pad: 1, wide: true },
  { x: [1, 4, 11, 10], w: [8, 4, 3, 3], bias: true, residual: false, stride: 2, pad: 1, wide: true },
  { x: [2, 6, 5, 5], w: [3, 6, 1, 1], bias: false, residual: false, stride: 1, pad: 0, wide: true }
]
const label = (c: Case): string => `conv ${JSON.stringify(c.x)}*${JSON.stringify(c.w)} s${c.stride} p${c.pad}${c.bias ? ' +bias' : ''}${c.residual ? ' +residual' : ''} ${c.wide ? 'bf16' : 'fp16'}`

/** Rounds to the nearest bfloat16 value (ties to even), so both backends see identical inputs. */
function toBf16 (v: number): number {
  const f = new Float32Array([v]); const u = new Uint32Array(f.buffer)
  u[0] = (u[0] + 0x7fff + ((u[0] >> 16) & 1)) & 0xffff0000
  return f[0]
}

function outShape (c: Case): number[] {
  const o = (n: number, k: number): number => Math.floor((n + 2 * c.pad - k) / c.stride) + 1
  return [c.x[0], c.w[0], o(c.x[2], c.w[2]), o(c.x[3], c.w[3])]
}

// Inputs per case, made once: every path and the CPU see the same values.
const inputs = cases.map((c, i) => {
  const g = new TorchGenerator(100 + i)
  const round = c.wide === true ? toBf16 : toHalf
  const make = (shape: number[], scale: number): { shape: number[], data: Float32Array } =>
    ({ shape, data: g.randn(shape).map(v => round(v * scale)) })
  return [make(c.x, 1), make(c.w, 0.3), c.bias ? make([c.w[0]], 1) : null, c.residual ? make(outShape(c), 1) : null]
})

interface Run { out: Float32Array, matmuls: number, launches: number, misuse: string[] }
async function run (rt: Runtime, i: number, nhwc = false): Promise<Run> {
  const c = cases[i]
  const ts = inputs[i].map(async h => {
    if (h === null) return null
    let t = rt.fromHost(h.data, h.shape)
    if (c.wide === true) { const w = await rt.engine.op('cast', [t], { wide: 1 }); t.dispose(); t = w }
    if (nhwc && h.shape.length === 4) { const l = await rt.engine.op('to_layout', [t], { nhwc: 1 }); t.dispose(); t = l }
    return t
  })
  const args = await Promise.all(ts)
  const before = emulationReport(true) // the counters from here count this op alone
  const y = await rt.engine.op('conv2d', args, { stride: c.stride, pad: c.pad })
  const r = emulationReport()
  const out = rt.toHost(y)
  for (const t of [...args, y]) t?.dispose()
  return { out, matmuls: r.matmuls, launches: r.launches, misuse: [...before.misuse, ...r.misuse] }
}

const cpu = Runtime.open('cpu', () => {})
const reference = new Map<number, Float32Array>()
async function expected (i: number): Promise<Float32Array> {
  if (!reference.has(i)) reference.set(i, (await run(cpu, i)).out)
  return reference.get(i)!
}

// Opens a GPU runtime with `env` set while it runs all cases (plans are built on first use, so the
// emulated heuristics see the variable), and gives each run to `check`.
async function eachCase (t: any, env: Record<string, string>, check: (c: Case, r: Run) => void, nhwc = false): Promise<string[]> {
  const notices: string[] = []
  Object.assign(process.env, env)
  try {
    const gpu = Runtime.open('cuda', msg => notices.push(msg))
    for (let i = 0; i < cases.length; i++) {
      const r = await run(gpu, i, nhwc)
      const err = relativeError(r.out, await expected(i))
      t.true(err <= (cases[i].wide === true ? 1e-2 : 2e-3), `${label(cases[i])}: relative error ${err}`)
      t.deepEqual(r.misuse, [], label(cases[i]))
      check(cases[i], r)
    }
    gpu.dispose()
  } finally {
    for (const k of Object.keys(env)) delete process.env[k]
  }
  return notices.filter(n => /cuDNN/.test(n))
}

test.serial('cuDNN fuses convolution, bias and residual into one graph: no kernel, no GEMM, results match the CPU', async t => {
  const notices = await eachCase(t, {}, (c, r) => {
    t.is(r.matmuls, 0, `${label(c)}: cuBLASLt matmuls`)
    t.is(r.launches, 0, `${label(c)}: kernel launches`)
  })
  t.deepEqual(notices, [])
})

test.serial('engines that fuse nothing: the convolution alone in cuDNN, then our bias/residual pass', async t => {
  await eachCase(t, { PG25_EMU_CUDNN: 'conv-only' }, (c, r) => {
    t.is(r.matmuls, 0, `${label(c)}: cuBLASLt matmuls`)
    t.is(r.launches, c.bias || c.residual ? 1 : 0, `${label(c)}: kernel launches`)
  })
})

test.serial('a shape no cuDNN engine takes falls back to im2col + cuBLASLt', async t => {
  const notices = await eachCase(t, { PG25_EMU_CUDNN: 'none' }, (c, r) => t.true(r.matmuls >= 1, `${label(c)}: ${r.matmuls} matmuls`))
  t.deepEqual(notices, [], 'cuDNN is there: no notice')
})

test.serial('PG25_DISABLE_CUDNN=1 forces the im2col path, without a notice', async t => {
  const notices = await eachCase(t, { PG25_DISABLE_CUDNN: '1' }, (c, r) => t.true(r.matmuls >= 1, `${label(c)}: ${r.matmuls} matmuls`))
  t.deepEqual(notices, [])
})

test.serial('without cuDNN: im2col, and a one-line notice naming the library, once per process', async t => {
  const notices = await eachCase(t, { PG25_EMU_CUDNN: 'missing' }, (c, r) => t.true(r.matmuls >= 1, `${label(c)}: ${r.matmuls} matmuls`))
  t.is(notices.length, 1, JSON.stringify(notices))
  t.regex(notices[0], /^@pg25\/native: cuDNN 9 \(libcudnn\.so\.9\) was not found: convolutions run as im2col/)
  t.false(notices[0].includes('\n'))
  const again = await eachCase(t, { PG25_EMU_CUDNN: 'missing' }, () => {})
  t.deepEqual(again, [], 'the second engine of the process is not told again')
})

test.serial('NHWC: cuDNN fuses convolution, bias and residual over channels-last tensors', async t => {
  await eachCase(t, {}, (c, r) => {
    t.is(r.matmuls, 0, `${label(c)}: cuBLASLt matmuls`)
    t.is(r.launches, 0, `${label(c)}: kernel launches`)
  }, true)
})

test.serial('NHWC: the convolution alone in cuDNN, then our channels-last bias/residual pass', async t => {
  await eachCase(t, { PG25_EMU_CUDNN: 'conv-only' }, (c, r) => {
    t.is(r.matmuls, 0, `${label(c)}: cuBLASLt matmuls`)
    t.is(r.launches, c.bias || c.residual ? 1 : 0, `${label(c)}: kernel launches`)
  }, true)
})

test.serial('NHWC without a cuDNN plan: im2col rows and one GEMM each, the bias and residual in its epilogue', async t => {
  await eachCase(t, { PG25_EMU_CUDNN: 'none' }, (c, r) => {
    t.true(r.matmuls >= 1, `${label(c)}: ${r.matmuls} matmuls`)
    const pointwise = c.w[2] === 1 && c.w[3] === 1 && c.stride === 1 && c.pad === 0
    // im2col's launches only: no separate bias pass; a 1x1 kernel is a GEMM over x itself.
    t.is(r.launches, pointwise ? 0 : r.matmuls, `${label(c)}: kernel launches`)
  }, true)
})

test.after.always('the emulation saw no misuse of cuDNN, cuBLASLt or the runtime, and no device memory is left', t => {
  cpu.dispose()
  const r = emulationReport()
  t.deepEqual(r.misuse, [])
  t.is(r.queued, 0)
  t.is(r.liveAllocations, 0)
})
