// npm run gpu:check — everything the CUDA backend must show, in one device call:
//   1. golden: each stage of tiny-pg25 on the GPU within relative 2e-2 of diffusers, pipeline images at PSNR >= 35 dB;
//   2. the full-size graph (real configs, synthetic weights from a seed) on the GPU against the CPU backend at 256x256;
//   3. timings at 1024x1024: both text encoders, one UNet step (batch 2), VAE decode, 50 guided steps end to end, peak memory;
//      the UNet step without CUDA graphs, and the UNet step and VAE decode with NCHW activations (PG25_CUDA_LAYOUT=nchw);
//      then both again with every op timed on the device (PG25_PROFILE=1), the time per op;
//   4. each op class at those shapes, ours beside PyTorch's (ratio ours / PyTorch); convolutions and GroupNorm in NHWC
//      (the backend's layout) and NCHW.
// PG25_GPU_CHECK_DEVICE=cpu runs the same checks on the CPU backend (to test the script); PG25_GPU_CHECK_FULL=0 skips 2, 3
// and 4 (with PG25_CUDA_EMULATION=1 that runs section 1 on the CUDA emulation). PG25_GPU_CHECK_SMOKE=1 runs 2, 3 and 4 on
// the tiny model's configs at 128x128 and on op shapes a sixteenth as large (a 256th of the rows), once each: every line of the script, in the
// CUDA emulation in seconds (test/gpu-check.test.ts), so a GPU session never finds it broken.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { CLIPTokenizer, EDMDPMSolverMultistepScheduler, Pipeline, Runtime, TextEncoderModel, TorchGenerator, UNetModel, VAEModel, readModelIndex, resolveComponent } from '../lib'
import { loadNative, type NativeTensor } from '../lib/native'
import { FULL, GOLDEN, TINY, readGolden, relativeError } from '../test/helpers'

const DEVICE = (process.env.PG25_GPU_CHECK_DEVICE ?? 'cuda') as 'cuda' | 'cpu'
const SMOKE = process.env.PG25_GPU_CHECK_SMOKE === '1'
const MODEL = SMOKE ? TINY : FULL
const RES = SMOKE ? 128 : 1024 // image side of the timings
const S = SMOKE ? 16 : 1
const px = (n: number): number => Math.max(1, n / S) // an op case's image side
const opRows = (n: number): number => Math.max(8, Math.ceil(n / (S * S))) // an op case's tokens or GEMM rows
const reps = (n: number): number => (SMOKE ? 1 : n)
const rows: Array<[string, string, string]> = []
const row = (name: string, value: string, verdict = ''): void => { rows.push([name, value, verdict]); console.log(`${name.padEnd(52)} ${value.padEnd(16)} ${verdict}`) }
// The engines' notices (a missing library, a CUDA graph that could not be recorded), each printed once.
const noticed = new Set<string>()
const notice = (msg: string): void => { if (!noticed.has(msg)) { noticed.add(msg); row('notice', '', msg) } }

const psnr = (a: Uint8Array, b: ArrayLike<number>): number => {
  let se = 0
  for (let i = 0; i < a.length; i++) se += (a[i] - Math.round(Math.min(1, Math.max(0, b[i])) * 255)) ** 2
  return se === 0 ? Infinity : 10 * Math.log10(255 ** 2 / (se / a.length))
}
// Each native job resolves once its GPU work has completed (it waits on an event off the main
// thread), so the time to an awaited result is the time of the work.
// Two untimed calls first: a UNet call at a new size runs eagerly, then records its CUDA graph.
async function timeMs (fn: () => Promise<unknown>, reps: number): Promise<number> {
  await fn()
  await fn()
  const times: number[] = []
  for (let i = 0; i < reps; i++) { const t0 = performance.now(); await fn(); times.push(performance.now() - t0) }
  return times.sort((x, y) => x - y)[Math.floor(times.length / 2)]
}

async function golden (): Promise<boolean> {
  let ok = true
  const rt = Runtime.open(DEVICE, notice)
  const idx = await readModelIndex(TINY)
  const src = async (n: string): Promise<any> => await resolveComponent(TINY, idx, n, null, () => {})
  const te1 = await TextEncoderModel.load(rt, await src('text_encoder'))
  const te2 = await TextEncoderModel.load(rt, await src('text_encoder_2'))
  const unet = await UNetModel.load(rt, await src('unet'))
  const vae = await VAEModel.load(rt, await src('vae'))
  const tok1 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'))
  const tok2 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer_2'))
  const te = readGolden('text_encoders.safetensors')
  const p = 'Astronaut in a jungle, cold color palette, muted colors, detailed, 8k'
  const a = await te1.encode([tok1.encode(p)]); const b = await te2.encode([tok2.encode(p)])
  for (const [name, t] of [['te1_penultimate', a.penultimate], ['te2_penultimate', b.penultimate], ['te2_text_embeds', b.pooled!]] as const) {
    const e = relativeError(rt.toHost(t), te[`p0.${name}`].data); ok &&= e <= 2e-2
    row(`golden ${name}`, e.toExponential(2), e <= 2e-2 ? 'pass' : 'FAIL')
  }
  const u = readGolden('unet.safetensors')
  const out = await unet.predict(rt.fromHost(u.sample.data, u.sample.shape), u.timestep.data[0], rt.fromHost(u.encoder_hidden_states.data, u.encoder_hidden_states.shape), rt.fromHost(u.text_embeds.data, u.text_embeds.shape), u.time_ids.data)
  let e = relativeError(rt.toHost(out), u.out.data); ok &&= e <= 2e-2
  row('golden unet', e.toExponential(2), e <= 2e-2 ? 'pass' : 'FAIL')
  const v = readGolden('vae.safetensors')
  e = relativeError(rt.toHost(await vae.decode(rt.fromHost(v.latent.data, v.latent.shape), false)), v.image.data); ok &&= e <= 2e-2
  row('golden vae', e.toExponential(2), e <= 2e-2 ? 'pass' : 'FAIL')
  rt.dispose()
  const pipe = await Pipeline.fromPretrained(TINY, { device: DEVICE })
  const cases = JSON.parse(readFileSync(path.join(GOLDEN, 'cases.json'), 'utf8')).pipeline
  for (const c of cases) {
    const g = readGolden(c.file)
    const r = await pipe.generate(c.prompt, { negativePrompt: c.negative ?? undefined, steps: c.steps, guidanceScale: c.guidance, width: c.w, height: c.h, seed: c.seed })
    const db = psnr(r.images[0].data, g.image.data); ok &&= db >= 35
    row(`golden ${c.file} PSNR`, `${db.toFixed(1)} dB`, db >= 35 ? 'pass' : 'FAIL')
  }
  await pipe.dispose()
  return ok
}

// The timed calls' inputs: UNet sample, conditioning and pooled embeddings, and VAE latents.
type Shapes = Record<'x' | 'c' | 'p' | 'z', number[]>
// The same values on every runtime that times them (seeds 1 to 4).
const modelInputs = (rt: Runtime, s: Shapes): NativeTensor[] => [s.x, s.c, s.p, s.z].map((shape, i) => rt.fromHost(new TorchGenerator(1 + i).randn(shape), shape))

interface Full { text_ms: number, unet_step_ms: number, unet_eager_ms: number, unet_nchw_ms: number, vae_ms: number, vae_nchw_ms: number, generate_s: number, peak_gib: number }

async function fullSize (): Promise<Full | null> {
  if (process.env.PG25_GPU_CHECK_FULL === '0') return null
  const cfg = (n: string): any => ({ className: JSON.parse(readFileSync(path.join(MODEL, 'model_index.json'), 'utf8'))[n][1], configPath: path.join(MODEL, n, 'config.json'), configText: readFileSync(path.join(MODEL, n, 'config.json'), 'utf8'), name: n, files: [], variant: null })
  const timeIds = (side: number): Float32Array => Float32Array.from([side, side, 0, 0, side, side, side, side, 0, 0, side, side])
  // 2. GPU against CPU on the same synthetic full-size UNet at 256x256 (32x32 latents, batch 2).
  const gen = new TorchGenerator(5)
  const small = RES / 4 / 8 // latent side
  const results: Float32Array[] = []
  let sample: Float32Array | undefined, ctx: Float32Array | undefined, pooled: Float32Array | undefined
  for (const dev of DEVICE === 'cuda' ? ['cuda', 'cpu'] as const : ['cpu'] as const) {
    const rt = Runtime.open(dev, notice)
    const unet = await UNetModel.load(rt, cfg('unet'), 1)
    const { crossAttentionDim: cross, textEmbedsDim: pool } = unet.info
    sample ??= gen.randn([2, 4, small, small]); ctx ??= gen.randn([2, 77, cross]).map(x => x * 0.5); pooled ??= gen.randn([2, pool])
    results.push(rt.toHost(await unet.predict(rt.fromHost(sample, [2, 4, small, small]), 0.8, rt.fromHost(ctx, [2, 77, cross]), rt.fromHost(pooled, [2, pool]), timeIds(RES / 4))))
    rt.dispose()
  }
  if (results.length === 2) {
    const e = relativeError(results[0], results[1])
    row('full-size UNet, synthetic weights, GPU vs CPU @256', e.toExponential(2), e <= 2e-2 ? 'pass' : 'FAIL')
  }
  // 3. Timings at 1024x1024 on the device.
  const lat = RES / 8
  const rt = Runtime.open(DEVICE, notice)
  const te1 = await TextEncoderModel.load(rt, cfg('text_encoder'), 2)
  const te2 = await TextEncoderModel.load(rt, cfg('text_encoder_2'), 3)
  const unet = await UNetModel.load(rt, cfg('unet'), 1)
  const vae = await VAEModel.load(rt, cfg('vae'), 4)
  rt.engine.peakBytes(true)
  const tokens = [Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i < 12 ? 320 + i : 49407)), Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : 49407))]
  const text_ms = await timeMs(async () => { const r1 = await te1.encode(tokens); const r2 = await te2.encode(tokens); r1.penultimate.dispose(); r2.penultimate.dispose(); r2.pooled?.dispose() }, reps(5))
  const shapes: Shapes = { x: [2, 4, lat, lat], c: [2, 77, unet.info.crossAttentionDim], p: [2, unet.info.textEmbedsDim], z: [1, 4, lat, lat] }
  const [x, c, p, z] = modelInputs(rt, shapes)
  const tid = timeIds(RES)
  const unet_step_ms = await timeMs(async () => (await unet.predict(x, 0.5, c, p, tid)).dispose(), reps(5))
  let finite = true
  const vae_ms = await timeMs(async () => { const img = await vae.decode(z); finite &&= rt.toHost(img).every(Number.isFinite); img.dispose() }, reps(3))
  row(`VAE decode at ${RES}x${RES} has no NaN/Inf`, String(finite), finite ? 'pass' : 'FAIL')
  // The generate() loop: prompt encoding, 50 guided DPM++ steps on device tensors, decode, RGB bytes.
  const sched = new EDMDPMSolverMultistepScheduler(JSON.parse(readFileSync(path.join(MODEL, SMOKE ? 'scheduler/scheduler_config.json' : 'scheduler_config.json'), 'utf8')))
  const t0 = performance.now()
  const e1 = await te1.encode(tokens); const e2 = await te2.encode(tokens)
  const embeds = rt.engine.concat(e1.penultimate, e2.penultimate, -1)
  const steps = SMOKE ? 2 : 50
  sched.setTimesteps(steps)
  let xt: NativeTensor = rt.ops.lincomb([[sched.initNoiseSigma, z]])
  for (let i = 0; i < steps; i++) {
    const s = sched.scaleModelInput(rt.ops, xt, i)
    const out = await unet.predict(s, sched.timesteps[i], embeds, e2.pooled!, tid) // one latent for both halves, as generate() passes it
    const eps = rt.ops.lincomb([[-2, rt.engine.slice0(out, 0, 1)], [3, rt.engine.slice0(out, 1, 1)]])
    const next = sched.step(rt.ops, eps, i, xt)
    for (const t of [s, out, eps, xt]) t.dispose()
    xt = next
  }
  await vae.toRGB8(await vae.decode(xt)) // the image bytes on the host end the timed run
  const generate_s = (performance.now() - t0) / 1000
  const peak_gib = rt.engine.peakBytes() / 2 ** 30
  // The same UNet step launched kernel by kernel (no CUDA graph: PG25_CUDA_GRAPHS=0 when a UNet first
  // runs), to show what the recording saves. After the peak is read: this loads a second UNet.
  process.env.PG25_CUDA_GRAPHS = '0'
  const eager = await UNetModel.load(rt, cfg('unet'), 1)
  const unet_eager_ms = await timeMs(async () => (await eager.predict(x, 0.5, c, p, tid)).dispose(), reps(5))
  delete process.env.PG25_CUDA_GRAPHS
  rt.dispose()
  // The same UNet step and decode with activations kept NCHW (the layout is chosen when an engine opens).
  process.env.PG25_CUDA_LAYOUT = 'nchw'
  const nchw = Runtime.open(DEVICE, notice)
  delete process.env.PG25_CUDA_LAYOUT
  const unetN = await UNetModel.load(nchw, cfg('unet'), 1)
  const [xn, cn, pn, zn] = modelInputs(nchw, shapes)
  const unet_nchw_ms = await timeMs(async () => (await unetN.predict(xn, 0.5, cn, pn, tid)).dispose(), reps(5))
  const vaeN = await VAEModel.load(nchw, cfg('vae'), 4)
  const vae_nchw_ms = await timeMs(async () => (await vaeN.decode(zn)).dispose(), reps(3))
  nchw.dispose()
  await profile(cfg, shapes, tid)
  return { text_ms, unet_step_ms, unet_eager_ms, unet_nchw_ms, vae_ms, vae_nchw_ms, generate_s, peak_gib }
}

// Where one UNet step and one VAE decode spend their time, per op (PG25_PROFILE=1: each op timed by the
// device, kernel by kernel; the totals exceed a replayed call's time by the launch gaps a graph removes).
async function profile (cfg: (n: string) => any, shapes: Shapes, tid: Float32Array): Promise<void> {
  process.env.PG25_PROFILE = '1'
  const rt = Runtime.open(DEVICE, notice)
  delete process.env.PG25_PROFILE
  const [x, c, p, z] = modelInputs(rt, shapes)
  const report = (what: string): void => {
    const ops = Object.entries(rt.engine.profile()).sort((a, b) => b[1].ms - a[1].ms)
    const total = ops.reduce((s, [, o]) => s + o.ms, 0)
    row(`profile ${what}: all ops`, `${total.toFixed(2)} ms`)
    for (const [op, o] of ops) row(`profile ${what}: ${op}`, `${o.ms.toFixed(2)} ms`, `${o.calls} calls, ${(100 * o.ms / total).toFixed(1)}%`)
  }
  const unet = await UNetModel.load(rt, cfg('unet'), 1)
  ;(await unet.predict(x, 0.5, c, p, tid)).dispose() // first call: plans found, memory pooled
  rt.engine.profile()
  ;(await unet.predict(x, 0.5, c, p, tid)).dispose()
  report('unet step')
  const vae = await VAEModel.load(rt, cfg('vae'), 4)
  ;(await vae.decode(z)).dispose()
  rt.engine.profile()
  ;(await vae.decode(z)).dispose()
  report('vae decode')
  rt.dispose()
}

// 4. Each op class at the UNet's and VAE's 1024x1024 shapes, ours (through Engine.op) beside PyTorch's
// own op on the same shapes (bench/torch_ops.py prints the same names), with the ratio.
// `im2col` cases run with PG25_DISABLE_CUDNN=1 (the fallback) and are compared with the PyTorch op named by `peer`;
// `nhwc` cases take their rank-4 inputs channels last (the GPU's image layout), the ' nchw' rows the same op in NCHW.
// `env` is set while a case is timed (PG25_ATTENTION_ROWS=16: the attention kernel of one row tile a warp).
interface OpCase { name: string, op: string, inputs: number[][], attrs?: Record<string, unknown>, im2col?: boolean, peer?: string, nhwc?: boolean, env?: Record<string, string> }
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
const OP_CASES: OpCase[] = [
  ...CONVS.flatMap(c => [convCase(c, false, true), convCase(c, false, false), convCase(c, true, true), convCase(c, true, false)]),
  ...[[2 * 4096, 640, 640], [2 * 4096, 640, 5120], [2 * 4096, 2560, 640], [2 * 1024, 1280, 1280], [2 * 1024, 1280, 10240], [2 * 1024, 5120, 1280], [2 * 77, 2048, 1280]]
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

async function opTimings (): Promise<Map<string, number>> {
  const ours = new Map<string, number>()
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
    for (const c of OP_CASES.filter(c => (c.im2col === true) === im2col)) {
      const ts = await Promise.all(c.inputs.map(async (shape, i) => {
        const t = rt.fromHost(new TorchGenerator(10 + i).randn(shape).map(v => v * 0.1), shape)
        if (c.nhwc !== true || shape.length !== 4) return t
        const y = await rt.engine.op('to_layout', [t], { nhwc: 1 })
        t.dispose()
        return y
      }))
      Object.assign(process.env, c.env ?? {})
      try {
        ours.set(c.name, await timeMs(async () => (await rt.engine.op(c.op, ts, c.attrs ?? {})).dispose(), reps(10)))
      } finally {
        for (const k of Object.keys(c.env ?? {})) Reflect.deleteProperty(process.env, k)
      }
      for (const t of ts) t.dispose()
    }
    rt.dispose()
  }
  return ours
}

// PyTorch's whole UNet call and VAE decode at the same size (bench/torch_models.py: diffusers' models from
// the real configs, fp16, channels_last), in this same run. Needs diffusers' source (PG25_DIFFUSERS, which
// gpu-check.sh run sets from what pack carried).
function torchModels (full: Full): Record<string, number> {
  const out: Record<string, number> = {}
  const src = process.env.PG25_DIFFUSERS
  if (src === undefined) {
    row('pytorch whole-model timings', 'skipped', 'no diffusers source (PG25_DIFFUSERS): see scripts/gpu-check.sh pack')
    return out
  }
  try {
    // (the smoke mode runs them on the CPU, where a PyTorch with diffusers is at hand)
    const text = execFileSync('python3', [path.join(__dirname, '..', '..', 'bench', 'torch_models.py'), MODEL, String(RES / 8), SMOKE ? 'cpu' : 'cuda', String(reps(5))],
      { encoding: 'utf8', timeout: 600_000, env: { ...process.env, PYTHONPATH: src } })
    for (const line of text.trim().split('\n')) { const [name, ms] = line.split('\t'); out[name] = Number(ms) }
  } catch (err) {
    row('pytorch whole-model timings', 'unavailable', String((err as Error).message).split('\n')[0])
    return out
  }
  for (const [name, ours] of [['unet_step', full.unet_step_ms], ['vae_decode', full.vae_ms]] as const) {
    if (out[name] !== undefined) row(`pytorch ${name} (diffusers, eager)`, `${out[name].toFixed(1)} ms`, `ours ${ours.toFixed(1)} ms, ratio ${(ours / out[name]).toFixed(2)}`)
  }
  return out
}

function torchOps (ours: Map<string, number>): void {
  let peers = new Map<string, number>()
  try {
    if (SMOKE) throw new Error('not run in the smoke mode')
    const out = execFileSync('python3', [path.join(__dirname, '..', '..', 'bench', 'torch_ops.py')], { encoding: 'utf8', timeout: 300_000 })
    peers = new Map(out.trim().split('\n').map(line => { const [name, ms] = line.split('\t'); return [name, Number(ms)] }))
  } catch (err) {
    row('pytorch op timings', 'unavailable', String((err as Error).message).split('\n')[0])
  }
  for (const [name, ms] of ours) {
    const peer = peers.get(OP_CASES.find(c => c.name === name)?.peer ?? name)
    row(`op ${name}`, `${ms.toFixed(3)} ms`, peer === undefined ? '' : `pytorch ${peer.toFixed(3)} ms, ratio ${(ms / peer).toFixed(2)}`)
  }
}

async function main (): Promise<void> {
  let device = DEVICE as string
  try { device = execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { encoding: 'utf8' }).trim().split('\n')[0] } catch {}
  const commit = process.env.PG25_COMMIT ?? (() => { try { return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim() } catch { return 'unknown' } })()
  console.log(`gpu-check on ${device}, backend ${DEVICE}, commit ${commit}, ${new Date().toISOString()}`)
  const ok = await golden()
  const full = await fullSize()
  const peer = DEVICE === 'cuda' && full !== null ? torchModels(full) : {}
  if (DEVICE === 'cuda' && full !== null) torchOps(await opTimings())
  const f = (x: number | undefined, d = 1): string => (x === undefined ? 'n/a' : x.toFixed(d))
  console.log(`gpu-check: device=${device} commit=${commit} golden=${ok ? 'pass' : 'fail'} unet_step_ms=${f(full?.unet_step_ms)} unet_no_graph_ms=${f(full?.unet_eager_ms)} unet_nchw_ms=${f(full?.unet_nchw_ms)} vae_ms=${f(full?.vae_ms)} vae_nchw_ms=${f(full?.vae_nchw_ms)} text_ms=${f(full?.text_ms)} generate_s=${f(full?.generate_s, 2)} peak_gib=${f(full?.peak_gib, 2)} torch_unet_ms=${f(peer.unet_step)} torch_vae_ms=${f(peer.vae_decode)}`)
  if (!ok) process.exitCode = 1
}

main().catch(err => { console.error(err); process.exitCode = 1 })
