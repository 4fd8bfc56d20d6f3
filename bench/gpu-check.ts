// npm run gpu:check — what the CUDA backend must show on a GPU, in two phases, one device call each
// (scripts/gpu-check.sh run 1 | run 2; BENCHMARKS.md's GPU-time plan says when each runs):
//   phase 1, the verdict (bench/gpu-check/phase1.ts): libraries and versions, the golden stages and pipeline
//     images on the GPU, the full-size GPU-vs-CPU check at 256x256, and the headline timings at 1024x1024
//     (UNet call with and without CUDA graphs, VAE decode, 50 guided steps, peak memory) beside PyTorch's;
//   phase 2, where the time goes (bench/gpu-check/phase2.ts): the per-op profile, NCHW against NHWC, and each
//     op class beside PyTorch's, cuDNN and im2col.
// Each phase ends with one line `gpu-check: device=... phase=N key=value ...` (the format BENCHMARKS.md
// documents), printed last so it is inside the output that comes back.
// PG25_GPU_CHECK_DEVICE=cpu runs the checks on the CPU backend (to test the script); PG25_GPU_CHECK_SMOKE=1 runs
// them on the tiny model's configs at 128x128 and on op shapes a sixteenth as large (a 256th of the rows), once
// each: every line of the script, in the CUDA emulation in seconds (test/native/device-rehearsal.test.ts).
import { execFileSync } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import { loadNative } from '../lib/native'
import { DEVICE, fmt, row } from './gpu-check/common'
import { golden, gpuVsCpu, headline, torchModels } from './gpu-check/phase1'
import { nchw, opTimings, profile, torchOps } from './gpu-check/phase2'

function deviceName (): string {
  try { return execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { encoding: 'utf8' }).trim().split('\n')[0].replace(/\s+/g, '_') } catch { return DEVICE }
}

/** How many cuDNN plans this process built and the seconds they took: CPU time spent inside the GPU budget. */
function planCost (): Record<string, string> {
  const info = loadNative().runtimeInfo()
  row('cuDNN plans built by this process', String(info.cudnnPlans ?? 0), `${fmt((info.cudnnPlanMs ?? 0) / 1000, 2)} s; GEMMs without a cuBLASLt algorithm: ${info.gemmFallbacks ?? 0}`)
  return {
    cudnn_plans: String(info.cudnnPlans ?? 0),
    cudnn_plan_s: fmt((info.cudnnPlanMs ?? 0) / 1000, 2),
    gemm_fallbacks: String(info.gemmFallbacks ?? 0)
  }
}

async function phase1 (): Promise<Record<string, string>> {
  const ok = await golden()
  const e = await gpuVsCpu()
  const h = await headline()
  const torch = DEVICE === 'cuda' ? torchModels() : {}
  const ratio = (ours: number, peer: number | undefined): string => (peer === undefined ? 'n/a' : (ours / peer).toFixed(2))
  for (const [name, ours] of [['unet_step', h.unet_step_ms], ['vae_decode', h.vae_ms]] as const) {
    if (torch[name] !== undefined) row(`pytorch ${name} (diffusers, eager)`, `${torch[name].toFixed(1)} ms`, `ours ${ours.toFixed(1)} ms, ratio ${ratio(ours, torch[name])}`)
  }
  const pass = ok && h.finite && (e === undefined || e <= 2e-2)
  return {
    verdict: pass ? 'pass' : 'fail',
    golden: ok ? 'pass' : 'fail',
    gpu_vs_cpu: e === undefined ? 'n/a' : e.toExponential(2),
    unet_step_ms: fmt(h.unet_step_ms),
    unet_no_graph_ms: fmt(h.unet_eager_ms),
    vae_ms: fmt(h.vae_ms),
    text_ms: fmt(h.text_ms),
    generate_s: fmt(h.generate_s, 2),
    peak_gib: fmt(h.peak_gib, 2),
    torch_unet_ms: fmt(torch.unet_step),
    torch_vae_ms: fmt(torch.vae_decode),
    unet_ratio: ratio(h.unet_step_ms, torch.unet_step),
    vae_ratio: ratio(h.vae_ms, torch.vae_decode)
  }
}

async function phase2 (): Promise<Record<string, string>> {
  const prof = await profile()
  const n = await nchw()
  const ratios = DEVICE === 'cuda' ? torchOps(await opTimings()) : []
  const slower = ratios.filter(r => r.ratio > 1).sort((a, b) => b.ratio - a.ratio)
  return {
    verdict: 'done',
    profile_unet_ms: fmt(prof.unet_ms, 2),
    profile_vae_ms: fmt(prof.vae_ms, 2),
    unet_nchw_ms: fmt(n.unet_ms),
    vae_nchw_ms: fmt(n.vae_ms),
    ops_compared: String(ratios.length),
    ops_slower_than_torch: String(slower.length),
    worst_op: slower.length === 0 ? 'none' : `${slower[0].name.replace(/\s+/g, '_')}:${slower[0].ratio.toFixed(2)}`
  }
}

async function main (): Promise<void> {
  const phase = process.argv[2] ?? process.env.PG25_GPU_CHECK_PHASE ?? '1'
  if (phase !== '1' && phase !== '2') throw new Error(`gpu-check: phase must be 1 or 2, got ${phase}`)
  const t0 = performance.now()
  const device = deviceName()
  const commit = process.env.PG25_COMMIT ?? 'unknown'
  const info = loadNative().runtimeInfo()
  console.log(`gpu-check phase ${phase} on ${device}, backend ${DEVICE}, commit ${commit}, ${new Date().toISOString()}`)
  row('libraries', '', info.cudaLibraries ?? 'CUDA not compiled into this build')
  row('runtime', '', info.cuda)
  let fields: Record<string, string>
  try {
    fields = phase === '1' ? await phase1() : await phase2()
  } catch (err) {
    console.error(err)
    fields = { verdict: 'error', error: String((err as Error).message ?? err).split('\n')[0].replace(/\s+/g, '_').slice(0, 200) }
  }
  Object.assign(fields, planCost(), { wall_s: fmt((performance.now() - t0) / 1000) })
  console.log(`gpu-check: device=${device} phase=${phase} commit=${commit} ${Object.entries(fields).map(([k, v]) => `${k}=${v}`).join(' ')}`)
  if (fields.verdict === 'fail' || fields.verdict === 'error') process.exitCode = 1
}

main().catch(err => { console.error(err); process.exitCode = 1 })
