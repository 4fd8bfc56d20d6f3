// npm run fuzz, LoRA stage: randomized (not coverage-guided) LoRA files for FUZZ_SECONDS: PEFT metadata
// (alpha_pattern keys that are module names, suffixes, regular expressions or junk; alphas huge, tiny,
// negative or not numbers; rsLoRA and DoRA flags; JSON that is not an object), tensor names of every
// scheme, ranks up to thousands, and values up to float32's limit. Every file must load or be refused
// with a Pg25Error (within 5 s under npm run fuzz), and what loads must hold finite scales whose deltas float32 can carry.
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Pg25Error } from '../lib/errors'
import { writeSafetensors, type TensorToWrite } from '../lib/io/safetensors-writer'
import { readLoRA, type WeightShapes } from '../lib/lora/file'

const MODULES = ['mid_block.attentions.0.proj_in', 'mid_block.attentions.0.transformer_blocks.0.attn1.to_k',
  'down_blocks.0.resnets.0.conv1']
const SHAPES: WeightShapes = {
  unet: { [`${MODULES[0]}.weight`]: [32, 32], [`${MODULES[1]}.weight`]: [32, 32], [`${MODULES[2]}.weight`]: [32, 32, 3, 3] },
  text_encoder: { 'text_model.encoder.layers.0.self_attn.q_proj.weight': [32, 32] },
  text_encoder_2: {}
}

let state = 0x2545f491
const rnd = (n: number): number => { state ^= state << 13; state ^= state >>> 17; state ^= state << 5; return (state >>> 0) % n }
const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)]

const KEYS = ['to_k', 'attn1.to_k', '^mid_block.attentions.0.proj_in', 'proj_in$', 'conv1', '(((.+)+)+)+Z', '.*', 'to_[kq]',
  'a'.repeat(5000), '', '.', 'mid_block..x']
const NUMBERS = [1, 4, 8, 0, -3, 1e-30, 1e30, 1e300, -1e300, 3e38, 0.5]
const VALUES = [0, 0.01, -0.5, 1e17, 3e38, -3e38, 1e-40]

function metadata (): Record<string, string> | undefined {
  if (rnd(4) === 0) return undefined
  if (rnd(10) === 0) return { lora_adapter_metadata: pick(['[1,2]', 'null', '{', '"x"', '{}']) }
  const cfg: Record<string, unknown> = {}
  for (const c of ['unet', 'text_encoder']) {
    if (rnd(2)) cfg[`${c}.lora_alpha`] = rnd(5) ? pick(NUMBERS) : pick(['8', null, [], {}])
    const patterns = (): Record<string, unknown> =>
      Object.fromEntries(Array.from({ length: rnd(6) }, () => [pick(KEYS), rnd(5) ? pick(NUMBERS) : 'x']))
    if (rnd(2)) cfg[`${c}.alpha_pattern`] = rnd(8) ? patterns() : pick([null, [], 'x'])
    if (rnd(6) === 0) cfg[`${c}.use_rslora`] = true
    if (rnd(20) === 0) cfg[`${c}.use_dora`] = true
  }
  return { format: 'pt', lora_adapter_metadata: JSON.stringify(cfg) }
}

function tensors (): TensorToWrite[] {
  const out: TensorToWrite[] = []
  for (let m = rnd(3) + 1; m > 0; m--) {
    const mod = pick(MODULES)
    const conv = mod.endsWith('conv1')
    const rank = pick([1, 4, 16, 64, 1024, 4096])
    const rankOff = rnd(12) === 0 ? 1 : 0
    const name = pick([`unet.${mod}`, `lora_unet_${mod.replace(/\./g, '_')}`])
    const kohya = name.startsWith('lora_')
    const value = pick(VALUES)
    const t = (suffix: string, shape: number[]): TensorToWrite => ({
      name: `${name}.${suffix}`,
      dtype: pick(['F32', 'F16', 'BF16'] as const),
      shape,
      data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(value)
    })
    if (out.some(x => x.name.startsWith(`${name}.`))) continue
    out.push(t(kohya ? 'lora_down.weight' : 'lora_A.weight', conv ? [rank, 32, 3, 3] : [rank, 32]))
    if (rnd(15)) out.push(t(kohya ? 'lora_up.weight' : 'lora_B.weight', conv ? [32, rank + rankOff, 1, 1] : [32, rank + rankOff]))
    if (kohya && rnd(2)) out.push({ name: `${name}.alpha`, dtype: 'F32', shape: [], data: new Float32Array([pick(NUMBERS)]) })
  }
  return out
}

const F32_MAX = 3.4028234663852886e38

/**
 * Runs inputs while `more(runs)`; throws on the first broken invariant (and on an input that takes over
 * `maxMs`, when given). The test suite runs a fixed number of them, npm run fuzz runs for FUZZ_SECONDS.
 */
export async function fuzzLoRA (more: (runs: number) => boolean, maxMs?: number): Promise<{ runs: number, loaded: number }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-fuzz-lora-'))
  let runs = 0
  let loaded = 0
  try {
    while (more(runs)) {
      const file = path.join(dir, `f${runs % 4}.safetensors`)
      const meta = metadata()
      await writeSafetensors(file, tensors(), meta)
      const started = Date.now()
      try {
        const mods = await readLoRA(file, SHAPES, { bytes: 64 * 2 ** 20, text: 'the fuzz allows 64 MiB' })
        for (const m of mods) {
          if (!Number.isFinite(m.scale) || !m.up.every(Number.isFinite) || !m.down.every(Number.isFinite)) {
            throw new Error(`loaded non-finite values: ${JSON.stringify(meta)}`)
          }
          const peak = (xs: Float32Array): number => xs.reduce((a, v) => Math.max(a, Math.abs(v)), 0)
          const bound = peak(m.up) * peak(m.down) * m.rank * Math.abs(m.scale)
          if (!(bound * 100 <= F32_MAX)) throw new Error(`loaded a delta float32 cannot hold at scale 100: ${JSON.stringify(meta)}`)
        }
        loaded++
      } catch (err) {
        if (!(err instanceof Pg25Error)) throw new Error(`not a Pg25Error (${(err as Error).message}) for metadata ${JSON.stringify(meta)}`)
      }
      const took = Date.now() - started
      if (maxMs !== undefined && took > maxMs) throw new Error(`took ${took} ms for metadata ${JSON.stringify(meta)}`)
      runs++
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true })
  }
  return { runs, loaded }
}

if (require.main === module) {
  const end = Date.now() + Number(process.env.FUZZ_SECONDS ?? 180) * 1000
  fuzzLoRA(() => Date.now() < end, 5000).then(
    ({ runs, loaded }) => { console.log(`fuzz: lora stat::number_of_executed_units: ${runs} (${loaded} loaded)`) },
    err => { console.error(`fuzz: lora FOUND A FAILURE: ${(err as Error).message}`); process.exitCode = 1 })
}
