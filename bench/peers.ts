// npm run bench:peers [-- ITEM...]: our CPU backend against PyTorch (diffusers) and ONNX Runtime on the
// same work, 2 threads each, one after another. Items: unet32 unet64 vae pipeline tinyunet (default: all).
// The first four run at each weight precision (ours: fp32, bf16 and fp16 storage; PyTorch: float32 and
// bfloat16 models), every one in a process of its own, whose peak RSS is reported beside its time.
// Our side runs here, each item in a child process of its own (the full-size UNet holds ~10 GiB). The
// peers' side runs bench/peers.py under the Python named by PG25_PEERS_PYTHON (a venv built as
// BENCHMARKS.md says); without it, the recorded peer numbers (bench/peer-numbers.ts) stand in.
// Each side prints `RESULT <who> <item> <median ms> <runs...>` lines, one warm-up call and then N timed calls.
import { execFileSync, spawnSync } from 'node:child_process'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { Pipeline, Runtime, TorchGenerator, UNetModel, VAEModel, readModelIndex, resolveComponent } from '../lib'
import { fullConfig, REF } from './full-model'
import { fmtMs, PEER_ROWS, ratioCell, type WorkItem } from './peer-numbers'

type Precision = 'fp32' | 'bf16' | 'fp16'
const PRECISIONS = ['fp32', 'bf16', 'fp16'] as const

const ROOT = path.join(__dirname, '..', '..')
const TINY = path.join(REF, 'tiny-pg25')
const THREADS = process.env.PG25_THREADS ?? '2'
const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]

async function timed (item: string, reps: number, fn: () => Promise<unknown>): Promise<void> {
  await fn()
  const runs: number[] = []
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now()
    await fn()
    runs.push(performance.now() - t0)
  }
  console.log(`RESULT ours ${item} ${median(runs).toFixed(1)} ${runs.map(r => r.toFixed(1)).join(' ')}`)
}

/** A CPU runtime storing the weights it loads at `precision`. */
function cpuRuntime (precision: Precision): Runtime {
  const rt = Runtime.open('cpu', () => {})
  rt.engine.setWeightPrecision(precision)
  return rt
}

/** Our side of one item, in this process. The full-size models get synthetic weights (seeded). */
async function runOurs (item: WorkItem, precision: Precision): Promise<void> {
  const g = new TorchGenerator(5)
  if (item === 'unet32' || item === 'unet64') {
    const res = item === 'unet32' ? 32 : 64
    const rt = cpuRuntime(precision)
    const unet = await UNetModel.load(rt, fullConfig('unet'), 1)
    const ctx = rt.fromHost(g.randn([2, 77, 2048]), [2, 77, 2048])
    const te = rt.fromHost(g.randn([2, 1280]), [2, 1280])
    const sample = rt.fromHost(g.randn([2, 4, res, res]), [2, 4, res, res])
    const px = res * 8
    const ids = Float32Array.from([px, px, 0, 0, px, px, px, px, 0, 0, px, px])
    await timed(item, 3, async () => (await unet.predict(sample, 0.5, ctx, te, ids)).dispose())
    rt.dispose()
  } else if (item === 'vae') {
    const rt = cpuRuntime(precision)
    const vae = await VAEModel.load(rt, fullConfig('vae'), 4)
    const lat = rt.fromHost(g.randn([1, 4, 32, 32]), [1, 4, 32, 32])
    await timed(item, 3, async () => (await vae.decode(lat, false)).dispose())
    rt.dispose()
  } else if (item === 'pipeline') {
    const pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu', precision })
    await timed(item, 3, async () => await pipe.generate('a cat', { steps: 30, seed: 1, width: 128, height: 128, guidanceScale: 3 }))
    await pipe.dispose()
  } else {
    const rt = Runtime.open('cpu', () => {})
    const idx = await readModelIndex(TINY)
    const unet = await UNetModel.load(rt, await resolveComponent(TINY, idx, 'unet', null, () => {}))
    const sample = rt.fromHost(g.randn([2, 4, 16, 16]), [2, 4, 16, 16])
    const ctx = rt.fromHost(g.randn([2, 77, 64]), [2, 77, 64])
    const te = rt.fromHost(g.randn([2, 32]), [2, 32])
    const ids = Float32Array.from([128, 128, 0, 0, 128, 128, 128, 128, 0, 0, 128, 128])
    await timed(item, 10, async () => (await unet.predict(sample, 0.5, ctx, te, ids)).dispose())
    rt.dispose()
  }
  console.log(`RSS ours ${item} ${process.resourceUsage().maxRSS * 1024}`)
}

/** RESULT and RSS lines of a child's output: who -> median ms, and who -> peak RSS bytes. */
function results (out: string, item: string): { ms: Map<string, number>, rss: Map<string, number> } {
  const ms = new Map<string, number>()
  const rss = new Map<string, number>()
  for (const line of out.split('\n')) {
    const f = line.trim().split(/\s+/)
    if (f[0] === 'RESULT' && f[2] === item) ms.set(f[1], Number(f[3]))
    if (f[0] === 'RSS' && f[2] === item) rss.set(f[1], Number(f[3]))
  }
  return { ms, rss }
}

const gb = (bytes: number | undefined): string => bytes === undefined ? '–' : `${(bytes / 2 ** 30).toFixed(1)} GiB`

function runChild (cmd: string, args: string[], env: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 1 << 24 })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stderr}`)
  process.stdout.write(r.stdout.split('\n').filter(l => /^(RESULT|RSS|#)/.test(l)).map(l => `  ${l}\n`).join(''))
  return r.stdout
}

async function main (): Promise<void> {
  const [flag, one, precision] = process.argv.slice(2)
  if (flag === '--ours') return await runOurs(one as WorkItem, (precision ?? 'fp32') as Precision)
  const items = process.argv.slice(2) as WorkItem[]
  const rows = PEER_ROWS.filter(r => items.length === 0 || items.includes(r.item))
  const python = process.env.PG25_PEERS_PYTHON
  const env = { PG25_THREADS: THREADS, OMP_NUM_THREADS: THREADS, MKL_NUM_THREADS: THREADS, PG25_REFERENCE: REF }
  let load = ''
  try { load = execFileSync('uptime', { encoding: 'utf8' }).trim() } catch {}
  console.log(`bench:peers · ${THREADS} threads each · peers ${python ? `measured now with ${python}` : 'as recorded (set PG25_PEERS_PYTHON to measure them)'} · ${load}`)
  const table: string[] = []
  const halves: string[] = []
  for (const row of rows) {
    console.log(`== ${row.item}: ${row.what}`)
    const ours = new Map<Precision, { ms?: number, rss?: number }>()
    for (const p of row.bf16 !== undefined ? PRECISIONS : ['fp32'] as const) {
      const r = results(runChild(process.execPath, [__filename, '--ours', row.item, p], env), row.item)
      ours.set(p, { ms: r.ms.get('ours'), rss: r.rss.get('ours') })
    }
    let torch = row.pytorch
    let ort = row.onnxruntime
    let torchBf16 = row.bf16?.pytorch
    let torchRss = row.bf16?.pytorchRss
    if (python) {
      const peer = results(runChild(python, [path.join(ROOT, 'bench', 'peers.py'), row.item], env), row.item)
      torch = peer.ms.get('pytorch') ?? torch
      ort = peer.ms.get('onnxruntime') ?? ort
      if (row.bf16 !== undefined) {
        const half = results(runChild(python, [path.join(ROOT, 'bench', 'peers.py'), row.item, 'bf16'], env), row.item)
        torchBf16 = half.ms.get('pytorch') ?? torchBf16
        torchRss = half.rss.get('pytorch') ?? torchRss
      }
    }
    const fp32 = ours.get('fp32')?.ms
    if (fp32 === undefined) throw new Error(`no result for ${row.item}`)
    table.push(`| ${row.what} | ${fmtMs(fp32)} | ${fmtMs(torch)} | ${ort !== undefined ? fmtMs(ort) : '–'} | ${ratioCell(fp32, torch, row.target.pytorch)} | ${ratioCell(fp32, ort, row.target.onnxruntime)} |`)
    if (row.bf16 !== undefined) {
      const [b, f] = [ours.get('bf16'), ours.get('fp16')]
      if (b?.ms === undefined || f?.ms === undefined) throw new Error(`no half-precision result for ${row.item}`)
      halves.push(`| ${row.what} | ${fmtMs(fp32)} | ${fmtMs(b.ms)} | ${fmtMs(f.ms)} | ${torchBf16 !== undefined ? fmtMs(torchBf16) : '–'} | ` +
        `${ratioCell(b.ms, fp32, 0.6)} | ${ratioCell(b.ms, torchBf16, 1)} | ${gb(ours.get('fp32')?.rss)} / ${gb(b.rss)} / ${gb(f.rss)} / ${gb(torchRss)} |`)
    }
  }
  console.log('\n| work | ours | PyTorch | ONNX Runtime | ours / PyTorch | ours / ONNX Runtime |\n| --- | --- | --- | --- | --- | --- |')
  console.log(table.join('\n'))
  if (halves.length > 0) {
    console.log('\n| work | ours fp32 | ours bf16 | ours fp16 storage | PyTorch bf16 | ours bf16 / ours fp32 | ours bf16 / PyTorch bf16 | peak RSS: ours fp32 / bf16 / fp16, PyTorch bf16 |')
    console.log('| --- | --- | --- | --- | --- | --- | --- | --- |')
    console.log(halves.join('\n'))
  }
}

main().catch(err => { console.error(err); process.exitCode = 1 })
