// npm run bench: tokenizer throughput, scheduler overhead, CPU GEMM rate and the tiny-model pipeline
// stages on the CPU backend. Speed lives here, never in the tests.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { CLIPTokenizer, EDMDPMSolverMultistepScheduler, hostOps, Pipeline, Runtime, TorchGenerator, UNetModel, VAEModel, readModelIndex, resolveComponent } from '../lib'
import { loadNative } from '../lib/native'
import { ensureDemoModel } from '../lib/demo/demo-model'
import { fmtMs, PEER_ROWS, ratioCell } from './peer-numbers'

const REF = path.resolve(process.env.PG25_REFERENCE ?? path.join(__dirname, '..', '..', '..', 'shared', 'reference'))
const rows: Array<[string, string]> = []
const report = (name: string, value: string): void => { rows.push([name, value]); console.log(`${name.padEnd(48)} ${value}`) }

async function time (fn: () => unknown, reps: number): Promise<number> {
  await fn()
  const t0 = performance.now()
  for (let i = 0; i < reps; i++) await fn()
  return (performance.now() - t0) / reps
}

const SUBJECTS = ['a cat', 'an astronaut', 'a lighthouse', 'a red fox', 'a castle', 'a robot', 'a dragon', 'a city street']
const STYLES = ['in a spacesuit', 'at sunset', 'in the rain, cinematic lighting', 'oil painting, highly detailed', 'watercolor, soft colors', '8k, photorealistic, dramatic clouds']
const prompts = Array.from({ length: 1000 }, (_, i) => `${SUBJECTS[i % SUBJECTS.length]} ${STYLES[(i * 7) % STYLES.length]}, variation ${i}`)

async function main (): Promise<void> {
  console.log(`@pg25/native bench · ${loadNative().runtimeInfo().threads} CPU threads · ${new Date().toISOString()}`)
  const tinyDir = path.join(REF, 'tiny-pg25')
  const tok = await CLIPTokenizer.fromPretrained(path.join(tinyDir, 'tokenizer'))
  const cold = performance.now()
  for (const p of prompts) tok.encode(p)
  report('tokenizer: 1,000 prompts, cold cache', `${(performance.now() - cold).toFixed(1)} ms`)
  report('tokenizer: 1,000 prompts, warm cache', `${(await time(() => { for (const p of prompts) tok.encode(p) }, 5)).toFixed(1)} ms`)

  const sched = new EDMDPMSolverMultistepScheduler({})
  const x0 = new TorchGenerator(0).randn([1, 4, 128, 128])
  report('scheduler: 50 DPM++ steps on 1x4x128x128 (host)', `${(await time(() => {
    sched.setTimesteps(50)
    let x = x0
    for (let i = 0; i < 50; i++) x = sched.step(hostOps, x0, i, x)
  }, 2)).toFixed(1)} ms`)

  const rt = Runtime.open('cpu', () => {})
  const idx = await readModelIndex(tinyDir)
  const unet = await UNetModel.load(rt, await resolveComponent(tinyDir, idx, 'unet', null, () => {}))
  const vae = await VAEModel.load(rt, await resolveComponent(tinyDir, idx, 'vae', null, () => {}))
  const sample = rt.fromHost(new TorchGenerator(1).randn([2, 4, 16, 16]), [2, 4, 16, 16])
  const ctx = rt.fromHost(new TorchGenerator(2).randn([2, 77, 64]), [2, 77, 64])
  const te = rt.fromHost(new TorchGenerator(3).randn([2, 32]), [2, 32])
  const ids = Float32Array.from([128, 128, 0, 0, 128, 128, 128, 128, 0, 0, 128, 128])
  report('tiny-pg25 UNet, batch 2, 16x16 latents (CPU)', `${(await time(async () => (await unet.predict(sample, 0.5, ctx, te, ids)).dispose(), 5)).toFixed(1)} ms`)
  const lat = rt.fromHost(new TorchGenerator(4).randn([1, 4, 16, 16]), [1, 4, 16, 16])
  report('tiny-pg25 VAE decode to 128x128 (CPU)', `${(await time(async () => (await vae.decode(lat)).dispose(), 5)).toFixed(1)} ms`)
  rt.dispose()

  const pipe = await Pipeline.fromPretrained(tinyDir, { device: 'cpu' })
  report('tiny-pg25 generate(), 128x128, 30 steps, CFG (CPU)', `${(await time(() => pipe.generate('a cat', { steps: 30, seed: 1 }), 2)).toFixed(0)} ms`)
  await pipe.dispose()
  const demo = await Pipeline.fromPretrained(await ensureDemoModel(), { device: 'cpu' })
  report('demo model generate(), 128x128, 50 steps, CFG (CPU)', `${(await time(() => demo.generate('a red circle on a blue background', { seed: 1 }), 1)).toFixed(0)} ms`)
  await demo.dispose()

  // Our CPU rows of the peer comparison (the work of bench/peers.ts, each in a child process) beside the
  // peers' recorded times. The full-size rows generate 10 GiB of weights each: PG25_BENCH_FULL=1 adds them.
  const full = process.env.PG25_BENCH_FULL === '1'
  console.log(`\nvs PyTorch / ONNX Runtime (recorded, 2 threads; BENCHMARKS.md)${full ? '' : ' · PG25_BENCH_FULL=1 adds the full-size rows'}`)
  for (const row of PEER_ROWS.filter(r => full || r.item === 'tinyunet' || r.item === 'pipeline')) {
    const env = { ...process.env, PG25_THREADS: process.env.PG25_THREADS ?? '2' }
    const r = spawnSync(process.execPath, [path.join(__dirname, 'peers.js'), '--ours', row.item], { env, encoding: 'utf8', maxBuffer: 1 << 24 })
    const line = r.stdout.split('\n').find(l => l.startsWith('RESULT ours'))
    if (line === undefined) throw new Error(`bench/peers.js --ours ${row.item} failed:\n${r.stderr}`)
    const ours = Number(line.split(/\s+/)[3])
    report(`${row.what} (CPU)`, `${fmtMs(ours)} · PyTorch ${fmtMs(row.pytorch)}: ${ratioCell(ours, row.pytorch, row.target.pytorch)}` +
    (row.onnxruntime !== undefined ? ` · ONNX Runtime ${fmtMs(row.onnxruntime)}: ${ratioCell(ours, row.onnxruntime, row.target.onnxruntime)}` : ''))
  }
}

main().catch(err => { console.error(err); process.exitCode = 1 })
