// LoRA tensor names -> our modules. Three naming schemes reach SDXL-family models:
// - kohya / A1111 (sd-scripts): `lora_unet_<module path, '.' -> '_'>.lora_down.weight` / `.lora_up.weight`
//   / `.alpha`, the UNet path in the original SGM layout (input_blocks / middle_block / output_blocks) or,
//   from diffusers-trained scripts, in diffusers' (down_blocks / mid_block / up_blocks);
//   `lora_te1_` / `lora_te2_` (`lora_te_` in single-encoder files) + the transformers CLIP path.
// - diffusers / PEFT: `unet.<module>.lora_A.weight` / `.lora_B.weight`, `text_encoder.…`, `text_encoder_2.…`
//   (alpha and rank in the header's `lora_adapter_metadata`), and the older diffusers spellings
//   `<module>.lora.down.weight`, `…lora_linear_layer.up.weight` and `attn1.processor.to_q_lora.down.weight`.
// Our modules are the graph's own weight names (diffusers layout), so kohya names are matched by
// generating, for every module we have, the names kohya would give it, rather than by parsing
// underscores back into dots.

export type LoRAComponent = 'unet' | 'text_encoder' | 'text_encoder_2'
export const LORA_COMPONENTS: readonly LoRAComponent[] = ['unet', 'text_encoder', 'text_encoder_2']

/** What one tensor of a LoRA file is: the part of a low-rank pair (or its alpha) for a module named by the file. */
export interface KeyRole {
  /** the module as the file names it, with its component prefix: the unit down, up and alpha are grouped by */
  group: string
  /** the component the prefix names; null for kohya names (resolved through the module index) */
  component: LoRAComponent | null
  /** the module path in diffusers dots (PEFT names) or the kohya name (kohya names) */
  module: string
  part: 'down' | 'up' | 'alpha'
}

/** Tensors of LoRA variants this package does not merge (they are not a plain up · down product). */
const VARIANTS: Array<[RegExp, string]> = [
  [/\.(hada_w[12]_[ab]|hada_t[12])$/, 'LoHa (LyCORIS)'],
  [/\.(lokr_w[12](_[ab])?|lokr_t2)$/, 'LoKr (LyCORIS)'],
  [/\.lora_mid\.weight$/, 'LoCon with a CP-decomposed middle (lora_mid)'],
  [/\.(dora_scale|lora_magnitude_vector(\.\w+)?(\.weight)?)$/, 'DoRA'],
  [/\.(diff|diff_b)$/, 'a full weight difference (diff)'],
  [/\.lora_[AB](\.\w+)?\.bias$/, 'LoRA with biases (lora_bias)'],
  [/\.(w_norm|b_norm)$/, 'a norm-layer LoRA (LyCORIS)']
]

const KOHYA = /^(lora_(?:unet|te1|te2|te)_[A-Za-z0-9_]+)\.(lora_down\.weight|lora_up\.weight|alpha)$/
const PREFIX = /^(?:(unet|text_encoder_2|text_encoder)\.)?(?:base_model\.model\.)?(.+)$/
const TE_PROCESSOR: Record<string, string> = { to_q: 'q_proj', to_k: 'k_proj', to_v: 'v_proj', to_out: 'out_proj' }
const processorModule = (component: LoRAComponent, base: string, proj: string): string =>
  component === 'unet' ? `${base}.${proj === 'to_out' ? 'to_out.0' : proj}` : `${base}.${TE_PROCESSOR[proj]}`

/**
 * The role of a LoRA tensor name, null when the name follows none of the schemes, or `{ variant }`
 * naming an unsupported LoRA variant the key belongs to.
 */
export function keyRole (key: string): KeyRole | { variant: string } | null {
  for (const [re, variant] of VARIANTS) if (re.test(key)) return { variant }
  const k = KOHYA.exec(key)
  if (k) return { group: k[1], component: null, module: k[1], part: k[2] === 'alpha' ? 'alpha' : k[2].startsWith('lora_down') ? 'down' : 'up' }
  const p = PREFIX.exec(key)!
  const component = (p[1] ?? 'unet') as LoRAComponent
  let rest = p[2]
  let part: KeyRole['part']
  let m: RegExpExecArray | null
  if ((m = /^(.+)\.lora_([AB])(?:\.default)?\.weight$/.exec(rest)) !== null) {
    rest = m[1]
    part = m[2] === 'A' ? 'down' : 'up'
  } else if ((m = /^(.+)\.(?:lora|lora_linear_layer)\.(down|up)\.weight$/.exec(rest)) !== null) {
    rest = m[1]
    part = m[2] as 'down' | 'up'
  } else if ((m = /^(.+?)(?:\.processor)?\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/.exec(rest)) !== null) {
    // diffusers' older attention-processor LoRAs: the UNet's attn1.processor.to_out_lora is
    // attn1.to_out.0; a text encoder's self_attn.to_q_lora is self_attn.q_proj
    rest = processorModule(component, m[1], m[2])
    part = m[3] as 'down' | 'up'
  } else if ((m = /^(.+?)(?:(?:\.processor)?\.(to_q|to_k|to_v|to_out)_lora)?\.alpha$/.exec(rest)) !== null) {
    rest = m[2] === undefined ? m[1] : processorModule(component, m[1], m[2])
    part = 'alpha'
  } else {
    return null
  }
  return { group: `${component}.${rest}`, component, module: rest, part }
}

/** Names of a UNet module in the SGM (original Stability) layout, from its diffusers name. */
export function sgmName (module: string, layersPerBlock: number, upHasAttention: (block: number) => boolean): string | null {
  const L1 = layersPerBlock + 1
  const resnet = (inner: string): string => inner
    .replace(/^conv1(?=\.|$)/, 'in_layers.2')
    .replace(/^conv2(?=\.|$)/, 'out_layers.3')
    .replace(/^time_emb_proj(?=\.|$)/, 'emb_layers.1')
    .replace(/^conv_shortcut(?=\.|$)/, 'skip_connection')
  const fixed: Record<string, string> = {
    conv_in: 'input_blocks.0.0',
    'time_embedding.linear_1': 'time_embed.0',
    'time_embedding.linear_2': 'time_embed.2',
    'add_embedding.linear_1': 'label_emb.0.0',
    'add_embedding.linear_2': 'label_emb.0.2',
    conv_norm_out: 'out.0',
    conv_out: 'out.2'
  }
  if (fixed[module] !== undefined) return fixed[module]
  let m: RegExpExecArray | null
  if ((m = /^down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(module)) !== null) return `input_blocks.${+m[1] * L1 + +m[2] + 1}.0.${resnet(m[3])}`
  if ((m = /^down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(module)) !== null) return `input_blocks.${+m[1] * L1 + +m[2] + 1}.1.${m[3]}`
  if ((m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv$/.exec(module)) !== null) return `input_blocks.${(+m[1] + 1) * L1}.0.op`
  if ((m = /^mid_block\.resnets\.([01])\.(.+)$/.exec(module)) !== null) return `middle_block.${m[1] === '0' ? 0 : 2}.${resnet(m[2])}`
  if ((m = /^mid_block\.attentions\.0\.(.+)$/.exec(module)) !== null) return `middle_block.1.${m[1]}`
  if ((m = /^up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(module)) !== null) return `output_blocks.${+m[1] * L1 + +m[2]}.0.${resnet(m[3])}`
  if ((m = /^up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)$/.exec(module)) !== null) return `output_blocks.${+m[1] * L1 + +m[2]}.1.${m[3]}`
  if ((m = /^up_blocks\.(\d+)\.upsamplers\.0\.conv$/.exec(module)) !== null) return `output_blocks.${+m[1] * L1 + layersPerBlock}.${upHasAttention(+m[1]) ? 2 : 1}.conv`
  return null
}

const underscored = (s: string): string => s.replace(/\./g, '_')

/**
 * Kohya names -> (component, module) for the modules a model has (`modules`: each component's module
 * paths, i.e. its weight names without `.weight`).
 */
export function kohyaIndex (modules: Record<LoRAComponent, string[]>): Map<string, { component: LoRAComponent, module: string }> {
  const index = new Map<string, { component: LoRAComponent, module: string }>()
  const unet = modules.unet
  const layersPerBlock = new Set(unet.map(m => /^down_blocks\.0\.resnets\.(\d+)\./.exec(m)?.[1]).filter(x => x !== undefined)).size
  const upHasAttention = (b: number): boolean => unet.some(m => m.startsWith(`up_blocks.${b}.attentions.`))
  for (const module of unet) {
    index.set(`lora_unet_${underscored(module)}`, { component: 'unet', module })
    const sgm = sgmName(module, layersPerBlock, upHasAttention)
    if (sgm !== null) index.set(`lora_unet_${underscored(sgm)}`, { component: 'unet', module })
  }
  for (const module of modules.text_encoder) {
    index.set(`lora_te1_${underscored(module)}`, { component: 'text_encoder', module })
    index.set(`lora_te_${underscored(module)}`, { component: 'text_encoder', module })
  }
  for (const module of modules.text_encoder_2) index.set(`lora_te2_${underscored(module)}`, { component: 'text_encoder_2', module })
  return index
}
