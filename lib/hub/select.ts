// Which files of a diffusers repository the pipeline reads: model_index.json, the scheduler config, both
// tokenizers, each network's config and its weights, picked by the rules lib/model/model-dir.ts applies
// to a folder (variant first or last, single file before a sharded index, Paddle-format stems), here
// applied to a file listing so that nothing else is downloaded.
import { Pg25Error } from '../errors'
import { parseJson } from '../model/files'

const NETWORKS = ['text_encoder', 'text_encoder_2', 'unet', 'vae']
const TOKENIZERS = ['tokenizer', 'tokenizer_2']
const TOKENIZER_NEEDS = ['vocab.json', 'merges.txt']

export interface Selection {
  /** repo paths to fetch, model_index.json excluded */
  files: string[]
  /** sharded-checkpoint index files: read them, then fetch the shards `shardsOf` names */
  shardIndexes: string[]
  /** what the pipeline needs and the listing lacks, named as the file that would satisfy it */
  missing: string[]
}

export interface SelectOptions {
  /** 'fp16' prefers `*.fp16.safetensors`; without it plain files are preferred, fp16 ones taken when alone */
  variant: string | null
  /** false for fromSingleFile's config folder: configs and tokenizers only */
  weights: boolean
  /** true: a requested variant must be present (no fallback to plain files) */
  strictVariant: boolean
}

/** `modelIndexText` is model_index.json; `listing` holds every repo path of the revision. */
export function selectFiles (listing: ReadonlySet<string>, modelIndexText: string, indexName: string, o: SelectOptions): Selection {
  const index = parseJson(modelIndexText, indexName) as Record<string, unknown>
  const sel: Selection = { files: [], shardIndexes: [], missing: [] }
  const need = (f: string): void => { (listing.has(f) ? sel.files : sel.missing).push(f) }
  need('scheduler/scheduler_config.json')
  for (const t of TOKENIZERS) {
    for (const f of TOKENIZER_NEEDS) if (!listing.has(`${t}/${f}`)) sel.missing.push(`${t}/${f}`)
    sel.files.push(...[...listing].filter(f => f.startsWith(`${t}/`) && !f.slice(t.length + 1).includes('/')))
  }
  for (const c of NETWORKS) {
    need(`${c}/config.json`)
    if (!o.weights) continue
    const entry = index !== null && typeof index === 'object' ? index[c] : undefined
    const library = Array.isArray(entry) ? entry[0] : undefined
    pickWeights(listing, c, library === 'transformers' ? 'model' : 'diffusion_pytorch_model', o, sel)
  }
  return sel
}

function pickWeights (listing: ReadonlySet<string>, dir: string, stem: string, o: SelectOptions, sel: Selection): void {
  const paddleStem = stem === 'model' ? 'model_state' : 'diffusion_paddle_model'
  const order = o.variant !== null ? (o.strictVariant ? [o.variant] : [o.variant, null]) : [null, 'fp16']
  for (const v of order) {
    const sfx = v !== null ? `.${v}` : ''
    for (const s of [stem, paddleStem]) {
      const single = `${dir}/${s}${sfx}.safetensors`
      if (listing.has(single)) { sel.files.push(single); return }
      const idx = [`${dir}/${s}.safetensors.index${sfx}.json`, `${dir}/${s}${sfx}.safetensors.index.json`].find(f => listing.has(f))
      if (idx !== undefined) { sel.shardIndexes.push(idx); return }
    }
  }
  sel.missing.push(`${dir}/${stem}${o.variant !== null ? `.${o.variant}` : ''}.safetensors`)
}

/** The shard paths a sharded-checkpoint index names (each a plain file name beside the index). */
export function shardsOf (indexPath: string, text: string): string[] {
  const raw = parseJson(text, indexPath) as { weight_map?: unknown }
  const map = raw?.weight_map
  if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new Pg25Error('PG25_BAD_CONFIG', `${indexPath}: "weight_map" must map tensor names to files`)
  const dir = indexPath.slice(0, indexPath.lastIndexOf('/'))
  return [...new Set(Object.values(map as Record<string, unknown>))].map(n => {
    if (typeof n !== 'string' || n === '' || n === '.' || n === '..' || /[/\\\0]/.test(n)) {
      throw new Pg25Error('PG25_BAD_CONFIG', `${indexPath}: shard name ${JSON.stringify(n)} must be a plain file name`)
    }
    return `${dir}/${n}`
  })
}
