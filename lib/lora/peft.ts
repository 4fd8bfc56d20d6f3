// PEFT's per-component LoraConfig, as diffusers stores it in a LoRA file's `lora_adapter_metadata`:
// lora_alpha, use_rslora, use_dora and alpha_pattern. PEFT reads alpha_pattern's keys as regular
// expressions; here they are module names, or dotted suffixes of them, as PEFT documents them and
// diffusers writes them. A key that is a regular expression is refused by name: a user's pattern is
// never compiled, so a file cannot make the main thread backtrack for minutes.
import { Pg25Error } from '../errors'
import { LORA_COMPONENTS, type LoRAComponent } from './keys'

export interface PeftConfig {
  alpha?: number
  /** the alpha of a module named by `alphaFor` (undefined: none of the patterns names it) */
  alphaFor: (module: string) => number | undefined
  rsLoRA: boolean
}

// A module path (`down_blocks.0.attentions.0.proj_in`), optionally anchored with ^ and $ as PEFT's
// own examples write them.
const MODULE_KEY = /^\^?([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)\$?$/

/** A lookup of alpha_pattern: the first key (in the file's order) that names the module or a dotted suffix of it. */
function patternLookup (file: string, component: LoRAComponent, pattern: Record<string, unknown>): (module: string) => number | undefined {
  const byName = new Map<string, { order: number, alpha: number, anchored: boolean }>()
  let order = 0
  for (const [key, alpha] of Object.entries(pattern)) {
    const m = MODULE_KEY.exec(key)
    if (m === null) {
      throw new Pg25Error('PG25_UNSUPPORTED', `${file}: ${component}.alpha_pattern key ${JSON.stringify(key.slice(0, 80))} ` +
        'is a regular expression; ' +
        'only module names and their dotted suffixes (e.g. "attn1.to_k") are read as alpha_pattern keys')
    }
    if (typeof alpha !== 'number' || !Number.isFinite(alpha)) {
      throw new Pg25Error('PG25_BAD_WEIGHTS', `${file}: ${component}.alpha_pattern[${JSON.stringify(key)}] must be a finite number`)
    }
    if (!byName.has(m[1])) byName.set(m[1], { order: order++, alpha, anchored: key.startsWith('^') })
  }
  if (byName.size === 0) return () => undefined
  return module => {
    let best: { order: number, alpha: number } | undefined
    const parts = module.split('.')
    // Each dotted suffix of the module, the whole name first: a few map lookups per module.
    for (let i = 0; i < parts.length; i++) {
      const hit = byName.get(parts.slice(i).join('.'))
      if (hit !== undefined && !(hit.anchored && i > 0) && (best === undefined || hit.order < best.order)) best = hit
    }
    return best?.alpha
  }
}

/** Each component's PEFT config from the header's metadata, where the file has it. */
export function peftConfigs (file: string, meta: Record<string, string>): Partial<Record<LoRAComponent, PeftConfig>> {
  const text = meta.lora_adapter_metadata
  if (text === undefined) return {}
  let cfg: Record<string, unknown>
  try {
    cfg = JSON.parse(text)
  } catch {
    throw new Pg25Error('PG25_BAD_WEIGHTS', `${file}: the header's lora_adapter_metadata is not JSON`)
  }
  if (cfg === null || typeof cfg !== 'object') {
    throw new Pg25Error('PG25_BAD_WEIGHTS', `${file}: the header's lora_adapter_metadata is not a JSON object`)
  }
  const out: Partial<Record<LoRAComponent, PeftConfig>> = {}
  for (const c of LORA_COMPONENTS) {
    if (cfg[`${c}.use_dora`] === true) {
      throw new Pg25Error('PG25_UNSUPPORTED', `${file}: the ${c} LoRA is DoRA (use_dora), which this package does not merge`)
    }
    const alpha = cfg[`${c}.lora_alpha`]
    const pattern = cfg[`${c}.alpha_pattern`]
    out[c] = {
      alpha: typeof alpha === 'number' && Number.isFinite(alpha) ? alpha : undefined,
      alphaFor: patternLookup(file, c, pattern !== null && typeof pattern === 'object' ? pattern as Record<string, unknown> : {}),
      rsLoRA: cfg[`${c}.use_rslora`] === true
    }
  }
  return out
}
