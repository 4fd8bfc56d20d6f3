// Single-file checkpoints: the one .safetensors file ComfyUI and A1111 users hold for SDXL-family
// models, with Stability's original (SGM) key names: the UNet under model.diffusion_model, the VAE
// under first_stage_model, CLIP-L under conditioner.embedders.0.transformer (Hugging Face names) and
// OpenCLIP bigG under conditioner.embedders.1.model, plus Playground's edm_mean / edm_std latent
// statistics. Each diffusers tensor the graph asks for is mapped to where it lives in the file.
import { Pg25Error, native as nativeCall } from '../errors'
import { componentManifest, loadNative, type ComponentSpec, type WeightAlias } from '../native'
import type { ComponentSource } from './model-dir'

const UNET = 'model.diffusion_model.'
const VAE = 'first_stage_model.'
const CLIP_L = 'conditioner.embedders.0.transformer.'
const CLIP_G = 'conditioner.embedders.1.model.'

const RESNET: Record<string, string> = { norm1: 'in_layers.0', conv1: 'in_layers.2', time_emb_proj: 'emb_layers.1', norm2: 'out_layers.0', conv2: 'out_layers.3', conv_shortcut: 'skip_connection' }
const VAE_ATTN: Record<string, string> = { group_norm: 'norm', to_q: 'q', to_k: 'k', to_v: 'v', 'to_out.0': 'proj_out' }

type Mapped = Omit<WeightAlias, 'name'>

function resnet (rest: string): string {
  const [mod, ...tail] = rest.split('.')
  return `${RESNET[mod] ?? mod}.${tail.join('.')}`
}

/** The SGM name of a diffusers UNet tensor. `layers` = layers_per_block; `attn[b]` = block b has attentions. */
export function unetKey (name: string, layers: number, upHasAttention: boolean[]): string {
  const fixed: Array<[RegExp, string]> = [
    [/^conv_in\./, 'input_blocks.0.0.'], [/^time_embedding\.linear_1\./, 'time_embed.0.'], [/^time_embedding\.linear_2\./, 'time_embed.2.'],
    [/^add_embedding\.linear_1\./, 'label_emb.0.0.'], [/^add_embedding\.linear_2\./, 'label_emb.0.2.'], [/^conv_norm_out\./, 'out.0.'], [/^conv_out\./, 'out.2.']
  ]
  for (const [re, to] of fixed) if (re.test(name)) return UNET + name.replace(re, to)
  let m = /^down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.*)$/.exec(name)
  if (m) {
    const [, b, kind, l, rest] = m
    if (kind === 'downsamplers') return `${UNET}input_blocks.${1 + Number(b) * (layers + 1) + layers}.0.op.${rest.replace(/^conv\./, '')}`
    const idx = 1 + Number(b) * (layers + 1) + Number(l)
    return kind === 'resnets' ? `${UNET}input_blocks.${idx}.0.${resnet(rest)}` : `${UNET}input_blocks.${idx}.1.${rest}`
  }
  m = /^mid_block\.(resnets|attentions)\.(\d+)\.(.*)$/.exec(name)
  if (m) {
    const [, kind, l, rest] = m
    return kind === 'attentions' ? `${UNET}middle_block.1.${rest}` : `${UNET}middle_block.${l === '0' ? 0 : 2}.${resnet(rest)}`
  }
  m = /^up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.*)$/.exec(name)
  if (m) {
    const [, b, kind, l, rest] = m
    const base = Number(b) * (layers + 1)
    if (kind === 'upsamplers') return `${UNET}output_blocks.${base + layers}.${upHasAttention[Number(b)] ? 2 : 1}.${rest}`
    const idx = base + Number(l)
    return kind === 'resnets' ? `${UNET}output_blocks.${idx}.0.${resnet(rest)}` : `${UNET}output_blocks.${idx}.1.${rest}`
  }
  throw new Pg25Error('PG25_INTERNAL', `no single-file name for UNet tensor "${name}"`)
}

/** The SGM name of a diffusers AutoencoderKL tensor; `blocks` = number of resolution levels. */
export function vaeKey (name: string, blocks: number): string {
  if (/^(quant_conv|post_quant_conv)\./.test(name)) return VAE + name
  const m = /^(encoder|decoder)\.(.*)$/.exec(name)
  if (!m) throw new Pg25Error('PG25_INTERNAL', `no single-file name for VAE tensor "${name}"`)
  const [, part, rest] = m
  const sub = (r: string): string => r.replace(/^conv_shortcut\./, 'nin_shortcut.')
  let out: string
  let x: RegExpExecArray | null
  if ((x = /^conv_norm_out\.(.*)$/.exec(rest))) out = `norm_out.${x[1]}`
  else if ((x = /^mid_block\.resnets\.(\d)\.(.*)$/.exec(rest))) out = `mid.block_${Number(x[1]) + 1}.${sub(x[2])}`
  else if ((x = /^mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)$/.exec(rest))) out = `mid.attn_1.${VAE_ATTN[x[1]]}.${x[2]}`
  else if ((x = /^down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/.exec(rest))) out = `down.${x[1]}.block.${x[2]}.${sub(x[3])}`
  else if ((x = /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$/.exec(rest))) out = `down.${x[1]}.downsample.conv.${x[2]}`
  else if ((x = /^up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/.exec(rest))) out = `up.${blocks - 1 - Number(x[1])}.block.${x[2]}.${sub(x[3])}`
  else if ((x = /^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$/.exec(rest))) out = `up.${blocks - 1 - Number(x[1])}.upsample.conv.${x[2]}`
  else out = rest // conv_in, conv_out
  return `${VAE}${part}.${out}`
}

/** Where a text_encoder_2 (CLIPTextModelWithProjection) tensor lives in OpenCLIP's layout. */
export function clipGKey (name: string, hidden: number): Mapped {
  const fixed: Record<string, Mapped> = {
    'text_model.embeddings.token_embedding.weight': { source: `${CLIP_G}token_embedding.weight` },
    'text_model.embeddings.position_embedding.weight': { source: `${CLIP_G}positional_embedding` },
    'text_model.final_layer_norm.weight': { source: `${CLIP_G}ln_final.weight` },
    'text_model.final_layer_norm.bias': { source: `${CLIP_G}ln_final.bias` },
    'text_projection.weight': { source: `${CLIP_G}text_projection`, op: 'transpose' }
  }
  if (fixed[name]) return fixed[name]
  const m = /^text_model\.encoder\.layers\.(\d+)\.(.*)$/.exec(name)
  if (!m) throw new Pg25Error('PG25_INTERNAL', `no single-file name for text_encoder_2 tensor "${name}"`)
  const [, i, rest] = m
  const block = `${CLIP_G}transformer.resblocks.${i}.`
  const qkv = /^self_attn\.(q|k|v)_proj\.(weight|bias)$/.exec(rest)
  if (qkv) {
    const which = 'qkv'.indexOf(qkv[1])
    return { source: `${block}attn.in_proj_${qkv[2]}`, op: 'rows', begin: which * hidden, count: hidden }
  }
  const map: Record<string, string> = { 'self_attn.out_proj': 'attn.out_proj', layer_norm1: 'ln_1', layer_norm2: 'ln_2', 'mlp.fc1': 'mlp.c_fc', 'mlp.fc2': 'mlp.c_proj' }
  const mod = rest.replace(/\.(weight|bias)$/, '')
  if (!map[mod]) throw new Pg25Error('PG25_INTERNAL', `no single-file name for text_encoder_2 tensor "${name}"`)
  return { source: `${block}${map[mod]}${rest.slice(mod.length)}` }
}

const KIND: Record<string, ComponentSpec['kind']> = { text_encoder: 'text_encoder', text_encoder_2: 'text_encoder', unet: 'unet', vae: 'vae', vae_encoder: 'vae_encoder' }

/** Aliases from every tensor a component's graph asks for to where a single-file checkpoint keeps it. */
export function singleFileAliases (component: string, spec: ComponentSpec): WeightAlias[] {
  const cfg = JSON.parse(spec.configText)
  const decl = componentManifest({ ...spec, kind: KIND[component] })
  return decl.map(d => {
    let mapped: Mapped
    if (component === 'unet') {
      const up = (cfg.up_block_types as string[]).map(t => t.startsWith('CrossAttn'))
      mapped = { source: unetKey(d.name, cfg.layers_per_block, up) }
    } else if (component === 'vae' || component === 'vae_encoder') {
      mapped = { source: vaeKey(d.name, cfg.block_out_channels.length) }
    } else if (component === 'text_encoder') {
      mapped = { source: CLIP_L + d.name }
    } else {
      mapped = clipGKey(d.name, cfg.hidden_size)
    }
    return { name: d.name, ...mapped }
  })
}

/** The four components of a single file, with configs taken from `base` (a diffusers-layout folder's sources). */
export async function singleFileSources (file: string, base: ComponentSource[]): Promise<ComponentSource[]> {
  const native = loadNative()
  const entries = await nativeCall(async () => await native.inspectSafetensors(file))
  const names = new Set(entries.map(e => e.name))
  for (const [prefix, what] of [[UNET, 'UNet'], [VAE, 'VAE'], [CLIP_L, 'CLIP-L text encoder'], [CLIP_G, 'OpenCLIP-bigG text encoder']]) {
    if (![...names].some(n => n.startsWith(prefix))) throw new Pg25Error('PG25_BAD_WEIGHTS', `${file}: no ${what} tensors (${prefix}*); this is not an SDXL-family single-file checkpoint`)
  }
  // Playground v2.5 single files carry their latent statistics; they take precedence over the config's.
  let stats: { mean: number[], std: number[] } | null = null
  if (names.has('edm_mean') && names.has('edm_std')) {
    const meta = entries.filter(e => e.name === 'edm_mean' || e.name === 'edm_std')
    const [mean, std] = await nativeCall(async () => await native.readTensors([{ path: file, paddle: false }], ['edm_mean', 'edm_std'].map(n => ({ name: n, shape: meta.find(e => e.name === n)!.shape, linear: false }))))
    stats = { mean: Array.from(mean), std: Array.from(std) }
  }
  return base.map(src => {
    let configText = src.configText
    if (src.name === 'vae' && stats) configText = JSON.stringify({ ...JSON.parse(configText), latents_mean: stats.mean, latents_std: stats.std })
    const spec: ComponentSpec = { kind: KIND[src.name], className: src.className, configPath: src.configPath, configText }
    const aliases = singleFileAliases(src.name, spec)
    if (src.name === 'vae') aliases.push(...singleFileAliases('vae_encoder', { ...spec, kind: 'vae_encoder' }))
    return { ...src, configText, files: [{ path: file, paddle: false }], aliases, variant: null }
  })
}
