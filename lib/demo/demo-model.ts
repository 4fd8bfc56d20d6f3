// The built-in demo model: Playground v2.5's architecture at a tiny size, with a small vocabulary and
// deterministic synthetic weights that this package generates itself. It is untrained: it draws
// noise-like pictures, and exists so that the whole pipeline runs anywhere without a download.
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Pg25Error } from '../errors'
import { componentManifest, type ComponentSpec } from '../native'
import { writeSafetensors, type TensorToWrite } from '../io/safetensors-writer'
import { TorchGenerator } from '../random/torch-generator'
import { bytesToUnicode } from '../tokenizer/clip-tokenizer'

const DEMO_VERSION = 2
const SEED = 2025

/** Words the demo vocabulary merges into whole tokens; anything else falls back to bytes. */
const WORDS = ('a an the of in on at with and or to by for from cat dog fox bird horse robot astronaut spacesuit portrait photo ' +
  'painting landscape city street night day sunset sunrise sky cloud clouds mountain mountains river lake sea ocean beach forest tree ' +
  'trees flower flowers garden house castle lighthouse car train ship boat space planet moon star stars galaxy neon light lights ' +
  'red orange yellow green blue purple pink black white gold silver color colors colorful dark bright soft warm cold cinematic ' +
  'detailed highly realistic photorealistic illustration digital art style anime watercolor oil sketch 8k 4k hd quality best ' +
  'beautiful cute old young man woman girl boy face eyes hair smiling dramatic lighting studio close up wide angle view blurry low ' +
  'jungle palette muted snow rain fog winter summer autumn spring coffee cup table window room interior fantasy magic dragon').split(' ')

/**
 * A CLIP-style BPE vocabulary: every byte (alone and word-final), then merges that make each of WORDS
 * one token. Merges are found by running BPE with the merges so far and joining the first two
 * symbols left, so the tokenizer's rank order reproduces every word.
 */
export function demoVocabulary (): { vocab: Record<string, number>, merges: string[] } {
  const byteChars = bytesToUnicode()
  const tokens: string[] = [...byteChars, ...byteChars.map(c => c + '</w>')]
  const merges: string[] = []
  const ranks = new Map<string, number>()
  const known = new Set(tokens)
  for (const word of WORDS) {
    const symbols = Array.from(Buffer.from(word, 'utf8'), b => byteChars[b])
    symbols[symbols.length - 1] += '</w>'
    for (;;) {
      // Apply known merges, lowest rank first, as the tokenizer does.
      for (;;) {
        let best = -1
        let bestRank = Infinity
        for (let i = 0; i + 1 < symbols.length; i++) {
          const r = ranks.get(symbols[i] + ' ' + symbols[i + 1])
          if (r !== undefined && r < bestRank) { bestRank = r; best = i }
        }
        if (best < 0) break
        symbols.splice(best, 2, symbols[best] + symbols[best + 1])
      }
      if (symbols.length === 1) break
      const merge = `${symbols[0]} ${symbols[1]}`
      ranks.set(merge, merges.length)
      merges.push(merge)
      const merged = symbols[0] + symbols[1]
      if (!known.has(merged)) { tokens.push(merged); known.add(merged) }
    }
  }
  tokens.push('<|startoftext|>', '<|endoftext|>')
  return { vocab: Object.fromEntries(tokens.map((t, i) => [t, i])), merges }
}

function configs (vocabSize: number): Record<string, Record<string, unknown>> {
  const clip = (act: string, arch: string): Record<string, unknown> => ({
    architectures: [arch], model_type: 'clip_text_model', hidden_size: 32, intermediate_size: 64, num_attention_heads: 4,
    num_hidden_layers: 3, projection_dim: 32, vocab_size: vocabSize, max_position_embeddings: 77, layer_norm_eps: 1e-5, hidden_act: act
  })
  return {
    text_encoder: clip('quick_gelu', 'CLIPTextModel'),
    text_encoder_2: clip('gelu', 'CLIPTextModelWithProjection'),
    unet: {
      _class_name: 'UNet2DConditionModel', act_fn: 'silu', addition_embed_type: 'text_time', addition_time_embed_dim: 8,
      attention_head_dim: [2, 4, 4], block_out_channels: [32, 64, 64], cross_attention_dim: 64,
      down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'], flip_sin_to_cos: true, freq_shift: 0,
      in_channels: 4, layers_per_block: 2, mid_block_type: 'UNetMidBlock2DCrossAttn', norm_eps: 1e-5, norm_num_groups: 8,
      out_channels: 4, projection_class_embeddings_input_dim: 80, sample_size: 32, transformer_layers_per_block: [1, 1, 2],
      up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'], use_linear_projection: true
    },
    vae: {
      _class_name: 'AutoencoderKL', act_fn: 'silu', block_out_channels: [8, 16, 16, 16],
      down_block_types: Array(4).fill('DownEncoderBlock2D'), up_block_types: Array(4).fill('UpDecoderBlock2D'),
      in_channels: 3, out_channels: 3, latent_channels: 4, layers_per_block: 1, norm_num_groups: 4, sample_size: 256,
      scaling_factor: 0.5, latents_mean: [-1.6574, 1.886, -1.383, 2.5155], latents_std: [8.4927, 5.9022, 6.5498, 5.2299]
    }
  }
}

const KINDS: Record<string, { kind: ComponentSpec['kind'], cls: string, file: string }> = {
  text_encoder: { kind: 'text_encoder', cls: 'CLIPTextModel', file: 'model.safetensors' },
  text_encoder_2: { kind: 'text_encoder', cls: 'CLIPTextModelWithProjection', file: 'model.safetensors' },
  unet: { kind: 'unet', cls: 'UNet2DConditionModel', file: 'diffusion_pytorch_model.safetensors' },
  vae: { kind: 'vae', cls: 'AutoencoderKL', file: 'diffusion_pytorch_model.safetensors' }
}

/**
 * Synthetic weights for a component's graph from a seed: the tensors its config asks for, with
 * norms at 1, biases at 0, embeddings ~N(0, 0.02) and other weights ~N(0, 1/fan_in).
 */
export function syntheticWeights (spec: ComponentSpec, seed: number): TensorToWrite[] {
  const params = componentManifest(spec)
  const gen = new TorchGenerator(seed)
  return params.map(p => {
    const n = p.shape.reduce((a, b) => a * b, 1)
    const leaf = p.name.split('.').slice(-2).join('.')
    let data: Float32Array
    if (/norm|layer_norm|ln_/.test(leaf) && p.shape.length === 1) {
      data = new Float32Array(n).fill(p.name.endsWith('.weight') ? 1 : 0)
    } else if (p.name.endsWith('.bias')) {
      data = new Float32Array(n)
    } else {
      const fanIn = p.shape.length > 1 ? n / p.shape[0] : n
      const scale = /embedding\.weight$/.test(p.name) ? 0.02 : 1 / Math.sqrt(fanIn)
      data = gen.randn([n]).map(v => v * scale)
    }
    return { name: p.name, dtype: 'F32', shape: p.shape, data }
  })
}

export function defaultDemoDir (): string {
  if (process.env.PG25_DEMO_DIR) return process.env.PG25_DEMO_DIR
  const cache = process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache')
  return path.join(cache, 'pg25', `demo-model-v${DEMO_VERSION}`)
}

// Lists every file of a finished demo model with its SHA-256; written last, checked on each use.
const MANIFEST = 'pg25-demo-manifest.json'

async function fileHashes (dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const rel of (await fs.readdir(dir, { recursive: true, withFileTypes: true })).filter(e => e.isFile())) {
    const file = path.join(rel.parentPath ?? rel.path, rel.name)
    const name = path.relative(dir, file)
    if (name !== MANIFEST) out[name] = createHash('sha256').update(await fs.readFile(file)).digest('hex')
  }
  return out
}

/** Whether `dir` holds a complete demo model whose files still match its manifest. */
async function intact (dir: string): Promise<boolean> {
  try {
    const want = JSON.parse(await fs.readFile(path.join(dir, MANIFEST), 'utf8')) as Record<string, string>
    const have = await fileHashes(dir)
    return Object.keys(want).length > 0 && Object.entries(want).every(([f, h]) => have[f] === h)
  } catch {
    return false
  }
}

/** A folder that is absent, empty, or a (damaged) demo model: anything else is not ours to delete. */
async function replaceable (dir: string): Promise<boolean> {
  const entries = await fs.readdir(dir).catch((): string[] => [])
  if (entries.length === 0 || entries.includes(MANIFEST)) return true
  const index = await fs.readFile(path.join(dir, 'model_index.json'), 'utf8').catch(() => '')
  return index.includes('"_pg25_demo"')
}

/**
 * The demo model directory, generated on first use (a few MB, deterministic, atomic). A cached copy
 * whose files no longer match their recorded hashes (truncated, edited, half-deleted) is rebuilt.
 */
export async function ensureDemoModel (dir = defaultDemoDir()): Promise<string> {
  if (await intact(dir)) return dir
  await fs.mkdir(path.dirname(dir), { recursive: true })
  if (!await replaceable(dir)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `${dir}: exists and is not a demo model folder; refusing to replace it`)
  await fs.rm(dir, { recursive: true, force: true })
  const tmp = await fs.mkdtemp(`${dir}.tmp-`)
  const { vocab, merges } = demoVocabulary()
  const cfgs = configs(Object.keys(vocab).length)
  const json = async (rel: string, value: unknown): Promise<void> => {
    await fs.mkdir(path.dirname(path.join(tmp, rel)), { recursive: true })
    await fs.writeFile(path.join(tmp, rel), JSON.stringify(value, null, 2) + '\n')
  }
  await json('model_index.json', {
    _class_name: 'StableDiffusionXLPipeline', _pg25_demo: 'untrained demo model generated by @pg25/native', force_zeros_for_empty_prompt: true,
    scheduler: ['diffusers', 'EDMDPMSolverMultistepScheduler'], text_encoder: ['transformers', 'CLIPTextModel'],
    text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'], tokenizer: ['transformers', 'CLIPTokenizer'],
    tokenizer_2: ['transformers', 'CLIPTokenizer'], unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL']
  })
  await json('scheduler/scheduler_config.json', {
    _class_name: 'EDMDPMSolverMultistepScheduler', algorithm_type: 'dpmsolver++', final_sigmas_type: 'zero', lower_order_final: true,
    prediction_type: 'epsilon', rho: 7.0, sigma_data: 0.5, sigma_max: 80.0, sigma_min: 0.002, solver_order: 2, solver_type: 'midpoint'
  })
  for (const [name, pad] of [['tokenizer', '<|endoftext|>'], ['tokenizer_2', '!']]) {
    await json(`${name}/vocab.json`, vocab)
    await fs.writeFile(path.join(tmp, name, 'merges.txt'), ['#version: 0.2', ...merges].join('\n') + '\n')
    await json(`${name}/tokenizer_config.json`, {
      bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: pad, model_max_length: 77, tokenizer_class: 'CLIPTokenizer'
    })
  }
  let seed = SEED
  for (const [name, k] of Object.entries(KINDS)) {
    const configPath = path.join(tmp, name, 'config.json')
    await json(`${name}/config.json`, cfgs[name])
    const spec = { kind: k.kind, className: k.cls, configPath, configText: JSON.stringify(cfgs[name]) }
    await writeSafetensors(path.join(tmp, name, k.file), syntheticWeights(spec, seed++))
  }
  await fs.writeFile(path.join(tmp, MANIFEST), JSON.stringify(await fileHashes(tmp), null, 2) + '\n')
  try {
    await fs.rename(tmp, dir)
  } catch (err) {
    // Another process finished first: keep its copy.
    await fs.rm(tmp, { recursive: true, force: true })
    if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  return dir
}
