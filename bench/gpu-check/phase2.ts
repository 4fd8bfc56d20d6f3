// gpu-check phase 2, where the time goes: the per-op profile of a UNet call and a VAE decode, both again
// with NCHW activations, and each op class at the UNet's and VAE's 1024x1024 shapes beside PyTorch's own
// op (bench/torch_ops.py prints the same names), both timed on the device by events on the stream.
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { Runtime } from '../../lib/runtime'
import { UNetModel, VAEModel } from '../../lib/model/components'
import { loadNative, type NativeTensor } from '../../lib/native'
import { DEVICE, SMOKE, cfg, median, notice, opRows, px, reps, row, timeIds, timeMs, RES } from './common'
import { modelInputs, shapesFor } from './phase1'

// Where one UNet call and one VAE decode spend their time, per op (PG25_PROFILE=1: each op timed by the
// device, kernel by kernel; the totals exceed a replayed call's time by the launch gaps a graph removes).
export async function profile (): Promise<{ unet_ms: number, vae_ms: number }> {
  process.env.PG25_PROFILE = '1'
  const rt = Runtime.open(DEVICE, notice)
  delete process.env.PG25_PROFILE
  const report = (what: string): number => {
    const ops = Object.entries(rt.engine.profile()).sort((a, b) => b[1].ms - a[1].ms)
    const total = ops.reduce((s, [, o]) => s + o.ms, 0)
    row(`profile ${what}: all ops`, `${total.toFixed(2)} ms`)
    for (const [op, o] of ops) row(`profile ${what}: ${op}`, `${o.ms.toFixed(2)} ms`, `${o.calls} calls, ${(100 * o.ms / total).toFixed(1)}%`)
    return total
  }
  const unet = await UNetModel.load(rt, cfg('unet'), 1)
  const [x, c, p, z] = modelInputs(rt, shapesFor(unet))
  const tid = timeIds(RES)
  ;(await unet.predict(x, 0.5, c, p, tid)).dispose() // first call: plans found, memory pooled
  rt.engine.profile()
  ;(await unet.predict(x, 0.5, c, p, tid)).dispose()
  const unet_ms = report('unet call')
  const vae = await VAEModel.load(rt, cfg('vae'), 4)
  ;(await vae.decode(z)).dispose()
  rt.engine.profile()
  ;(await vae.decode(z)).dispose()
  const vae_ms = report('vae decode')
  rt.dispose()
  return { unet_ms, vae_ms }
}

/** The UNet call and VAE decode with activations kept NCHW (the layout is chosen when an engine opens). */
export async function nchw (): Promise<{ unet_ms: number, vae_ms: number }> {
  process.env.PG25_CUDA_LAYOUT = 'nchw'
  const rt = Runtime.open(DEVICE, notice)
  delete process.env.PG25_CUDA_LAYOUT
  const unet = await UNetModel.load(rt, cfg('unet'), 1)
  const [x, c, p, z] = modelInputs(rt, shapesFor(unet))
  const tid = timeIds(RES)
  const unet_ms = await timeMs(async () => (await unet.predict(x, 0.5, c, p, tid)).dispose(), reps(5))
  const vae = await VAEModel.load(rt, cfg('vae'), 4)
  const vae_ms = await timeMs(async () => (await vae.decode(z)).dispose(), reps(3))
  rt.dispose()
  row(`UNet call, NCHW activations @${RES}`, `${unet_ms.toFixed(2)} ms`)
  row(`VAE decode, NCHW activations @${RES}`, `${vae_ms.toFixed(2)} ms`)
  return { unet_ms, vae_ms }
}

// `im2col` cases run with PG25_DISABLE_CUDNN=1 (the fallback) and are compared with the PyTorch op named by `peer`;
// `nhwc` cases take their rank-4 inputs channels last (the GPU's image layout), the ' nchw' rows the same op in NCHW.
// `env` is set while a case is timed (PG25_ATTENTION_ROWS=16: the attention kernel of one row tile a warp).
export interface OpCase {
  name: string, op: string, inputs: number[][], attrs?: Record<string, unknown>
  im2col?: boolean, peer?: string, nhwc?: boolean, env?: Record<string, string>
}
// Convolutions with their bias (and a ResNet's residual), as the UNet and VAE call them; PyTorch runs
// them channels_last (bench/torch_ops.py has the same list).
const CONVS: Array<{ name: string, x: number[], k: number, r: number, stride: number, residual?: boolean }> = [
  { name: 'conv3x3 320ch 128x128 b2 +bias', x: [2, 320, px(128), px(128)], k: 320, r: 3, stride: 1 },
  { name: 'conv3x3 640ch 64x64 b2 +bias+residual', x: [2, 640, px(64), px(64)], k: 640, r: 3, stride: 1, residual: true },
  { name: 'conv3x3 1280ch 32x32 b2 +bias', x: [2, 1280, px(32), px(32)], k: 1280, r: 3, stride: 1 },
  { name: 'conv3x3 stride2 320ch 128x128 b2 +bias', x: [2, 320, px(128), px(128)], k: 320, r: 3, stride: 2 },
  { name: 'conv1x1 320->640ch 64x64 b2 +bias', x: [2, 320, px(64), px(64)], k: 640, r: 1, stride: 1 },
  { name: 'conv3x3 vae 128ch 1024x1024 +bias', x: [1, 128, px(1024), px(1024)], k: 128, r: 3, stride: 1 }
]
const convCase = (c: typeof CONVS[number], im2col: boolean, nhwc: boolean): OpCase => {
  const pad = c.r === 3 ? 1 : 0
  const out = [c.x[0], c.k, Math.floor((c.x[2] + 2 * pad - c.r) / c.stride) + 1, Math.floor((c.x[3] + 2 * pad - c.r) / c.stride) + 1]
  const name = `${c.name}${im2col ? ' im2col' : ''}${nhwc ? '' : ' nchw'}`
  return { name, peer: c.name, im2col, nhwc, op: 'conv2d', inputs: [c.x, [c.k, c.x[1], c.r, c.r], [c.k], ...(c.residual === true ? [out] : [])], attrs: { stride: c.stride, pad } }
}
// Each GroupNorm case in NHWC and (' nchw') NCHW.
const bothLayouts = (c: OpCase): OpCase[] => [{ ...c, nhwc: true }, { ...c, name: `${c.name} nchw`, peer: c.name }]
export const OP_CASES: OpCase[] = [
  ...CONVS.flatMap(c => [convCase(c, false, true), convCase(c, false, false), convCase(c, true, true), convCase(c, true, false)]),
  ...[[2 * 4096, 640, 640], [2 * 4096, 640, 5120], [2 * 4096, 2560, 640],
    [2 * 1024, 1280, 1280], [2 * 1024, 1280, 10240], [2 * 1024, 5120, 1280], [2 * 77, 2048, 1280]]
    .map(([m, k, n]) => ({ name: `gemm ${m}x${k}x${n}`, op: 'linear', inputs: [[opRows(m), k], [n, k]] })),
  ...[[4096, 10], [1024, 20]].flatMap(([count, heads]) => {
    const c = { name: `sdpa ${count} tokens ${heads} heads`, op: 'attention', inputs: Array(3).fill([2, opRows(count), heads * 64]), attrs: { heads, causal: 0 } }
    return [c, { ...c, name: `${c.name} rows16`, peer: c.name, env: { PG25_ATTENTION_ROWS: '16' } }]
  }),
  { name: 'sdpa vae 16384 tokens d512', op: 'attention', inputs: Array(3).fill([1, opRows(16384), 512]), attrs: { heads: 1, causal: 0 } },
  ...bothLayouts({ name: 'group_norm+silu 2x320x128x128 g32', op: 'group_norm', inputs: [[2, 320, px(128), px(128)], [320], [320]], attrs: { groups: 32, eps: 1e-5, silu: 1 } }),
  ...bothLayouts({ name: 'group_norm vae 1x128x1024x1024 g32', op: 'group_norm', inputs: [[1, 128, px(1024), px(1024)], [128], [128]], attrs: { groups: 32, eps: 1e-6, silu: 0 } }),
  { name: 'layer_norm 2x4096x640', op: 'layer_norm', inputs: [[2, opRows(4096), 640], [640], [640]], attrs: { eps: 1e-5 } },
  { name: 'geglu 2x4096x(2x2560)', op: 'geglu', inputs: [[2, opRows(4096), 5120]] }
]

export interface OpTime { deviceMs: number, wallMs: number }

/**
 * Our time for each op case: the median of device times (marks on the stream, CUDA events on a GPU) over
 * reps runs queued in one native job, and the wall time per run beside it. Inputs are made once per
 * shape and layout on the device (engine.randomTensor), not drawn in JavaScript.
 */
export async function opTimings (): Promise<Map<string, OpTime>> {
  const ours = new Map<string, OpTime>()
  // Two engines: the default one (convolutions through cuDNN where it was found), and one opened with
  // PG25_DISABLE_CUDNN=1 for the im2col cases.
  const info = loadNative().runtimeInfo()
  const found = /; cuDNN (\S+)/.exec(info.cuda) // "...; cuBLASLt <path>; cuDNN <path>" where both were found
  if (info.cudaEmulated) row('cuDNN for convolutions', 'emulated')
  else row('cuDNN for convolutions', found !== null ? 'found' : 'missing', found?.[1] ?? 'im2col only: both rows of each conv time im2col')
  for (const im2col of [false, true]) {
    if (im2col) process.env.PG25_DISABLE_CUDNN = '1'
    const rt = Runtime.open(DEVICE, notice)
    delete process.env.PG25_DISABLE_CUDNN
    const made = new Map<string, NativeTensor>()
    const input = async (shape: number[], nhwc: boolean): Promise<NativeTensor> => {
      const key = `${shape.join('x')}${nhwc ? ' nhwc' : ''}`
      let t = made.get(key)
      if (t === undefined) {
        t = nhwc ? await rt.engine.op('to_layout', [await input(shape, false)], { nhwc: 1 }) : await rt.engine.randomTensor(shape, made.size + 1, 0.1)
        made.set(key, t)
      }
      return t
    }
    for (const c of OP_CASES.filter(c => (c.im2col === true) === im2col)) {
      const ts = await Promise.all(c.inputs.map(async shape => await input(shape, c.nhwc === true && shape.length === 4)))
      Object.assign(process.env, c.env ?? {})
      try {
        const r = await rt.engine.timeOp(c.op, ts, c.attrs ?? {}, reps(20))
        ours.set(c.name, { deviceMs: median(r.deviceMs), wallMs: median(r.wallMs) })
      } finally {
        for (const k of Object.keys(c.env ?? {})) Reflect.deleteProperty(process.env, k)
      }
    }
    for (const t of made.values()) t.dispose()
    rt.dispose()
  }
  return ours
}

/** PyTorch's time for each peer op (CUDA events, cudnn.benchmark on), and each of ours beside it; the ratios. */
export function torchOps (ours: Map<string, OpTime>): Array<{ name: string, ratio: number }> {
  let peers = new Map<string, number>()
  try {
    if (SMOKE) throw new Error('not run in the smoke mode')
    const out = execFileSync('python3', [path.join(__dirname, '..', '..', '..', 'bench', 'torch_ops.py')], { encoding: 'utf8', timeout: 240_000 })
    peers = new Map(out.trim().split('\n').map(line => { const [name, ms] = line.split('\t'); return [name, Number(ms)] }))
  } catch (err) {
    row('pytorch op timings', 'unavailable', String((err as Error).message).split('\n')[0])
  }
  row('op timings', 'device ms', 'wall ms per run; ratio ours/PyTorch, both device time (PyTorch autotunes cuDNN: benchmark=True; ours takes the first heuristic plan)')
  const ratios: Array<{ name: string, ratio: number }> = []
  for (const [name, t] of ours) {
    const peer = peers.get(OP_CASES.find(c => c.name === name)?.peer ?? name)
    const ratio = peer === undefined ? NaN : t.deviceMs / peer
    if (Number.isFinite(ratio)) ratios.push({ name, ratio })
    row(`op ${name}`, `${t.deviceMs.toFixed(3)} ms`, `wall ${t.wallMs.toFixed(3)}` + (peer === undefined ? '' : `, pytorch ${peer.toFixed(3)} ms, ratio ${ratio.toFixed(2)}`))
  }
  return ratios
}
