// npm run bench:cpu-memory [-- fp32|bf16|fp16 ... [offload]]: the whole real pipeline on the CPU backend with
// synthetic full-size weights (the real configs, seeded values): both text encoders, the UNet and the
// VAE loaded, then one 1024x1024 guided step (the UNet at batch 2 on 128x128 latents) and the VAE
// decode to 1024x1024. Each precision runs in a process of its own, which reports its times and its
// peak RSS. Default: bf16 and fp16 (fp32 needs about 14 GB more). `offload` adds a run of each with the
// text encoders and the UNet paged out once their part is done (LoadOptions.offload).
import { spawnSync } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import { Runtime, TextEncoderModel, TorchGenerator, UNetModel, VAEModel } from '../lib'
import { fullConfig, REF } from './full-model'

type Precision = 'fp32' | 'bf16' | 'fp16'
const gib = (bytes: number): string => `${(bytes / 2 ** 30).toFixed(2)} GiB`

/** `offload`: the text encoders paged out after encoding and the UNet before the decode, as generate() does where memory is short. */
async function measure (precision: Precision, offload: boolean): Promise<void> {
  const rt = Runtime.open('cpu', () => {})
  rt.engine.setWeightPrecision(precision)
  const t0 = performance.now()
  const te1 = await TextEncoderModel.load(rt, fullConfig('text_encoder'), 11)
  const te2 = await TextEncoderModel.load(rt, fullConfig('text_encoder_2'), 12)
  const unet = await UNetModel.load(rt, fullConfig('unet'), 1)
  const vae = await VAEModel.load(rt, fullConfig('vae'), 4)
  const loaded = performance.now()
  const loadedRss = process.memoryUsage().rss
  // Two prompts (the negative and the positive), 77 tokens each.
  const ids = [0, 1].map(p => Array.from({ length: 77 }, (_, i) => i === 0 ? 49406 : i < 8 ? 320 + p * 7 + i : 49407))
  const a = await te1.encode(ids)
  const b = await te2.encode(ids)
  const ctx = rt.engine.concat(a.penultimate, b.penultimate, 2)
  if (offload) for (const te of [te1, te2]) await te.pageOut()
  const sample = rt.fromHost(new TorchGenerator(5).randn([1, 4, 128, 128]), [1, 4, 128, 128])
  const timeIds = Float32Array.from([1024, 1024, 0, 0, 1024, 1024, 1024, 1024, 0, 0, 1024, 1024])
  const t1 = performance.now()
  const eps = await unet.predict(sample, 0.5, ctx, b.pooled!, timeIds)
  if (offload) await unet.pageOut()
  const t2 = performance.now()
  // The pipeline decodes one image's latents (the guided step's two halves are combined first).
  const image = await vae.decode(sample)
  const t3 = performance.now()
  for (const t of [a.penultimate, b.penultimate, b.pooled, ctx, sample, eps, image]) t?.dispose()
  rt.dispose()
  console.log(`RESULT ${precision}${offload ? ' offload' : ''} load ${((loaded - t0) / 1000).toFixed(1)} s (RSS ${gib(loadedRss)}), text encoders ${((t1 - loaded) / 1000).toFixed(1)} s, ` +
    `guided UNet step ${((t2 - t1) / 1000).toFixed(1)} s, VAE decode ${((t3 - t2) / 1000).toFixed(1)} s, peak RSS ${gib(process.resourceUsage().maxRSS * 1024)}`)
}

async function main (): Promise<void> {
  const [flag, one, mode] = process.argv.slice(2)
  if (flag === '--one') return await measure(one as Precision, mode === 'offload')
  const args = process.argv.slice(2)
  const offload = args.includes('offload')
  const named = args.filter(a => a !== 'offload') as Precision[]
  const precisions = named.length > 0 ? named : ['bf16', 'fp16'] as Precision[]
  console.log(`bench:cpu-memory · ${process.env.PG25_THREADS ?? 'all'} threads · reference ${REF}`)
  for (const p of precisions) {
    for (const paged of offload ? [false, true] : [false]) {
      const r = spawnSync(process.execPath, [__filename, '--one', p, paged ? 'offload' : 'resident'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      if (r.status !== 0) throw new Error(`${p} failed (${r.status ?? r.signal})`)
      process.stdout.write(r.stdout)
    }
  }
}

main().catch(err => { console.error(err); process.exitCode = 1 })
