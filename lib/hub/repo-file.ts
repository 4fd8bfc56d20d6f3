// One file of a Hub repository (a LoRA, say) -> its path in the Hugging Face cache, fetched when the
// cache lacks it. Everything but the choice of file is the model download's own: the same cache layout,
// listing, locks, resume and checks (resolve.ts, download.ts). As fromPretrained does for models, a file
// already cached is used without a request, so it loads offline and at once.
import path from 'node:path'
import { Pg25Error } from '../errors'
import { checkDownloadFileOptions, type DownloadFileOptions } from '../options'
import { isOffline, MAX_NAME_BYTES, namesFit, type RepoCache } from './cache'
import { fetchFile, Meter } from './download'
import { listRevision, offlineCommit, target } from './resolve'

export type { DownloadFileOptions }

/** The name diffusers' save_lora_weights gives a LoRA, preferred when a repo holds it. */
const LORA_WEIGHT_NAME = 'pytorch_lora_weights.safetensors'
/** Paths diffusers never takes for a LoRA: training state, not weights. */
const NOT_LORA = ['scheduler', 'optimizer', 'checkpoint']

/**
 * The LoRA file among a repo's paths when none is named, by diffusers' rule (load_lora_weights without
 * weight_name): the `.safetensors` files whose path names no scheduler, optimizer or checkpoint, and of
 * those the `pytorch_lora_weights.safetensors` ones if any. Null when there is none; where diffusers
 * takes the first of several with a warning, several are refused here, naming them.
 */
export function pickLoRAFile (id: string, paths: Iterable<string>): string | null {
  let found = [...paths].filter(p => p.endsWith('.safetensors') && !NOT_LORA.some(s => p.includes(s)))
  if (found.some(p => p.endsWith(LORA_WEIGHT_NAME))) found = found.filter(p => p.endsWith(LORA_WEIGHT_NAME))
  if (found.length > 1) {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `${id} holds several .safetensors files (${found.sort().join(', ')}); name the one to load (weightName)`)
  }
  return found[0] ?? null
}

const isRepoPath = (p: string): boolean => p.split('/').every(s => s !== '' && s !== '.' && s !== '..') && !/[\\\0]/.test(p) && namesFit(p)

const local = (cache: RepoCache, commit: string, file: string): string => path.join(cache.snapshot(commit), ...file.split('/'))

/**
 * The local path of one file of a Hub repository, in the Hugging Face cache (huggingface_hub's layout),
 * downloaded if the cache lacks it (resumable, verified against the Hub's sha256, locked against
 * concurrent downloads). Without `file`, the repo's LoRA file is taken as diffusers' load_lora_weights
 * takes it (its only `.safetensors` file, or `pytorch_lora_weights.safetensors`); several are refused.
 * With HF_HUB_OFFLINE=1 only the cache is used.
 *
 * ```ts
 * import { Pipeline } from '@pg25/native'
 * import { downloadFile } from '@pg25/native/hub'
 * const file = await downloadFile('nerijs/pixel-art-xl', 'pixel-art-xl.safetensors')
 * await pipe.loadLoRA(file, { name: 'pixel' })
 * ```
 */
export async function downloadFile (id: string, file?: string, options: DownloadFileOptions = {}): Promise<string> {
  checkDownloadFileOptions(options)
  if (file !== undefined && (typeof file !== 'string' || !isRepoPath(file))) {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `the file to fetch from ${id} must be a path inside the repository ` +
      `(e.g. pytorch_lora_weights.safetensors), each name at most ${MAX_NAME_BYTES} bytes, got ${JSON.stringify(file)}`)
  }
  const t = target(id, options ?? {}, true)
  const what = file ?? 'a .safetensors file'
  /** The cached copy at `commit`, or null. */
  const cached = async (commit: string | null): Promise<string | null> => {
    if (commit === null) return null
    const name = file ?? pickLoRAFile(id, await t.cache.listSnapshot(commit))
    return name !== null && await t.cache.has(commit, name) ? local(t.cache, commit, name) : null
  }
  if (isOffline()) {
    const how = 'HF_HUB_OFFLINE=1 forbids downloading; load it once while online'
    const commit = await offlineCommit(t, how)
    const hit = await cached(commit)
    if (hit === null) throw new Pg25Error('PG25_NOT_FOUND', `${id}: the cached snapshot ${t.cache.snapshot(commit)} lacks ${what}, and ${how}`)
    return hit
  }
  const hit = await cached(await t.cache.commitFor(t.revision))
  if (hit !== null) return hit
  const listing = await listRevision(t, options ?? {})
  const name = file ?? pickLoRAFile(id, listing.files.keys())
  if (name === null) throw new Pg25Error('PG25_NOT_FOUND', `${id} holds no .safetensors file at revision "${t.revision}"`)
  const f = listing.remote(name)
  if (!await t.cache.has(listing.commit, name)) await fetchFile(listing.dl, t.cache, listing.commit, f, new Meter([f], options?.onProgress))
  await t.cache.writeRef(t.revision, listing.commit)
  return local(t.cache, listing.commit, name)
}
