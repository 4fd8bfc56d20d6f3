// A Hub model id -> a local snapshot folder in the Hugging Face cache, fetching only what the pipeline
// reads. `downloadModel` always asks the Hub what the revision holds now; `resolveModelDir` (used by
// fromPretrained) takes a complete cached snapshot as it is, without a request, so loading a cached
// model works offline and starts at once.
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { Pg25Error } from '../errors'
import { resolveToken } from './auth'
import { hubCacheDir, isCommitHash, isHubId, isOffline, MAX_NAME_BYTES, namesFit, RepoCache } from './cache'
import { fetchFile, Meter, type DownloadProgress, type RemoteFile } from './download'
import { HubRequest, hubEndpoint, timeoutFrom, type HubContext } from './http'
import { selectFiles, shardsOf } from './select'

export type { DownloadProgress } from './download'

export interface DownloadOptions {
  /** a branch, tag or commit hash (default 'main') */
  revision?: string
  /** 'fp16' fetches the `*.fp16.safetensors` weights (the default prefers full-precision files) */
  variant?: 'fp16'
  /** a Hugging Face access token, for gated or private models (default: $HF_TOKEN, else the `huggingface-cli login` token) */
  token?: string
  /**
   * byte progress: `file` in transfer with its own `fileLoadedBytes` of `fileTotalBytes`, and `loadedBytes` of
   * `totalBytes` over all the files fetched
   */
  onProgress?: (p: DownloadProgress) => void
  signal?: AbortSignal
  /** notices, such as a cached copy used because the Hub could not be reached */
  onWarning?: (message: string) => void
  /** the Hugging Face cache folder (default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub) */
  cacheDir?: string
}

const INDEX = 'model_index.json'
const wholeSize = (n: unknown): number | null => Number.isSafeInteger(n) ? n as number : null
/** One entry of the Hub's `siblings` list, as sent (every field checked before use). */
interface HubSibling { rfilename?: unknown, size?: unknown, blobId?: unknown, lfs?: { sha256?: unknown, size?: unknown } }
const OPTION_KEYS = new Set(['revision', 'variant', 'token', 'onProgress', 'signal', 'onWarning', 'cacheDir'])

export interface Target { id: string, revision: string, variant: string | null, weights: boolean, cache: RepoCache }

/** A Hub id and its options, checked, with the cache folder they name. */
export function target (id: string, o: Pick<DownloadOptions, 'revision' | 'variant' | 'cacheDir'>, weights: boolean): Target {
  if (typeof id !== 'string' || !isHubId(id)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `${JSON.stringify(id)} is not a Hub model id (org/name, e.g. playgroundai/playground-v2.5-1024px-aesthetic)`)
  const revision = o.revision ?? 'main'
  if (typeof revision !== 'string' || revision === '' || revision.split('/').some(s => s === '' || s === '.' || s === '..') || /[\\\0]/.test(revision)) {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `revision must be a branch, tag or commit hash, got ${JSON.stringify(revision)}`)
  }
  // Checked now, not when refs/<revision> is written after the whole download.
  if (!namesFit(revision)) {
    const shown = JSON.stringify(revision.slice(0, 40))
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `revision ${shown}...: each /-separated part may be at most ${MAX_NAME_BYTES} bytes`)
  }
  if (o.variant !== undefined && o.variant !== 'fp16') throw new Pg25Error('PG25_INVALID_ARGUMENT', `variant must be 'fp16', got ${JSON.stringify(o.variant)}`)
  if (o.cacheDir !== undefined && (typeof o.cacheDir !== 'string' || o.cacheDir === '')) throw new Pg25Error('PG25_INVALID_ARGUMENT',
    `cacheDir must be a folder path, got ${JSON.stringify(o.cacheDir)}`)
  const cache = o.cacheDir !== undefined ? path.resolve(o.cacheDir) : hubCacheDir()
  return { id, revision, variant: o.variant ?? null, weights, cache: new RepoCache(cache, id) }
}

/** What a cached snapshot lacks for the pipeline (an empty list: it is complete). */
async function missingFromCache (t: Target, commit: string, strictVariant: boolean): Promise<string[]> {
  const listing = new Set(await t.cache.listSnapshot(commit))
  if (!listing.has(INDEX)) return [INDEX]
  const dir = t.cache.snapshot(commit)
  const read = async (f: string): Promise<string> => await fs.readFile(path.join(dir, ...f.split('/')), 'utf8')
  const sel = selectFiles(listing, await read(INDEX), path.join(dir, INDEX), { variant: t.variant, weights: t.weights, strictVariant })
  for (const idx of sel.shardIndexes) sel.missing.push(...shardsOf(path.join(dir, idx), await read(idx)).filter(f => !listing.has(f)))
  return sel.missing
}

/** The cached commit of `t.revision` for HF_HUB_OFFLINE=1, or PG25_NOT_FOUND saying how to fetch it (`how`). */
export async function offlineCommit (t: Target, how: string): Promise<string> {
  const commit = await t.cache.commitFor(t.revision)
  if (commit === null || !await fs.stat(t.cache.snapshot(commit)).then(() => true, () => false)) throw new Pg25Error('PG25_NOT_FOUND', `${t.id} (revision ${t.revision}) is not in the Hugging Face cache (${t.cache.dir}) and ${how}`)
  return commit
}

/** The cached snapshot for HF_HUB_OFFLINE=1: complete, or an error naming what is missing. */
async function offlineSnapshot (t: Target): Promise<string> {
  const how = `HF_HUB_OFFLINE=1 forbids downloading; run \`pg25 download ${t.id}${t.revision !== 'main' ? ` --revision ${t.revision}` : ''}${t.variant !== null ? ` --variant ${t.variant}` : ''}\` while online`
  const commit = await offlineCommit(t, how)
  const missing = await missingFromCache(t, commit, false)
  if (missing.length > 0) throw new Pg25Error('PG25_NOT_FOUND', `${t.id}: the cached snapshot ${t.cache.snapshot(commit)} lacks ${missing.join(', ')}, and ${how}`)
  return t.cache.snapshot(commit)
}

function parseListing (url: string, raw: unknown): { commit: string, files: Map<string, RemoteFile> } {
  const info = raw as { sha?: unknown, siblings?: unknown }
  if (info === null || typeof info !== 'object' || typeof info.sha !== 'string' || !isCommitHash(info.sha) || !Array.isArray(info.siblings)) {
    throw new Pg25Error('PG25_HUB_NETWORK', `${url}: the Hub's model info lacks a commit hash ("sha") or a file list ("siblings")`)
  }
  const files = new Map<string, RemoteFile>()
  for (const s of info.siblings as Array<HubSibling | null>) {
    if (s === null || typeof s !== 'object') continue
    const p = s.rfilename
    // Only plain relative paths whose names a filesystem can hold: a listing must not place files outside the snapshot.
    if (typeof p !== 'string' || p.split('/').some(seg => seg === '' || seg === '.' || seg === '..') || /[\\\0]/.test(p)) continue
    if (!namesFit(p)) continue
    const sha256 = s.lfs?.sha256
    files.set(p, {
      path: p,
      size: wholeSize(s.size) ?? wholeSize(s.lfs?.size),
      blobId: typeof s.blobId === 'string' && /^[0-9a-f]{40}$/.test(s.blobId) ? s.blobId : null,
      sha256: typeof sha256 === 'string' && /^[0-9a-f]{64}$/.test(sha256) ? sha256 : null
    })
  }
  return { commit: info.sha, files }
}

/** What `t.revision` holds now, as the Hub lists it. */
export interface Listing {
  commit: string
  files: Map<string, RemoteFile>
  /** the context for fetching its files (the download timeout) */
  dl: HubContext
  /** a listed file, or PG25_NOT_FOUND naming it */
  remote: (p: string) => RemoteFile
}

/** Asks the Hub for the commit `t.revision` names and its files (sizes, blob ids, LFS sha256). */
export async function listRevision (t: Target, o: Pick<DownloadOptions, 'token' | 'signal'>): Promise<Listing> {
  const ctx: HubContext = { endpoint: hubEndpoint(), id: t.id, revision: t.revision, token: resolveToken(o.token), signal: o.signal, timeoutMs: timeoutFrom('HF_HUB_ETAG_TIMEOUT', 10) }
  const url = `${ctx.endpoint}/api/models/${t.id}/revision/${encodeURIComponent(t.revision)}?blobs=true`
  const req = new HubRequest(ctx, url)
  const { res } = await req.send('GET')
  if (res.status !== 200) throw await req.refusal(res)
  const { commit, files } = parseListing(url, await req.json(res))
  const remote = (p: string): RemoteFile => {
    const f = files.get(p)
    if (f === undefined) throw new Pg25Error('PG25_NOT_FOUND', `${t.id}: ${p} not found at revision "${t.revision}"`)
    return f
  }
  return { commit, files, remote, dl: { ...ctx, timeoutMs: timeoutFrom('HF_HUB_DOWNLOAD_TIMEOUT', 10) } }
}

/** Asks the Hub what `t.revision` holds, then fetches what the pipeline needs and is not cached. */
async function fetchSnapshot (t: Target, o: DownloadOptions): Promise<string> {
  const { commit, files, dl, remote } = await listRevision(t, o)
  const dir = t.cache.snapshot(commit)
  // model_index.json and shard indexes first: they say which other files are needed.
  const small = async (p: string): Promise<string> => {
    if (!await t.cache.has(commit, p)) await fetchFile(dl, t.cache, commit, remote(p))
    return await fs.readFile(path.join(dir, ...p.split('/')), 'utf8')
  }
  if (!files.has(INDEX)) throw new Pg25Error('PG25_NOT_FOUND', `${t.id}: no ${INDEX} at revision "${t.revision}": not a diffusers-format pipeline`)
  const sel = selectFiles(new Set(files.keys()), await small(INDEX), `${t.id}/${INDEX}`, { variant: t.variant, weights: t.weights, strictVariant: false })
  if (sel.missing.length > 0) throw new Pg25Error('PG25_NOT_FOUND', `${t.id} (revision ${t.revision}) lacks ${sel.missing.join(', ')}: is it a Playground v2.5 / SDXL model in diffusers format?`)
  const wanted = [...sel.files]
  for (const idx of sel.shardIndexes) wanted.push(...shardsOf(`${t.id}/${idx}`, await small(idx)))
  const plan: RemoteFile[] = []
  for (const p of wanted) if (!await t.cache.has(commit, p)) plan.push(remote(p))
  const meter = new Meter(plan, o.onProgress)
  for (const f of plan) await fetchFile(dl, t.cache, commit, f, meter)
  await t.cache.writeRef(t.revision, commit)
  return dir
}

/**
 * Downloads what the pipeline needs of a Hub model into the Hugging Face cache (the layout Python's
 * huggingface_hub uses, so diffusers finds it too) and returns the local snapshot folder. It asks the
 * Hub what the revision holds now and fetches only missing files; interrupted downloads resume.
 * With HF_HUB_OFFLINE=1 it returns the cached snapshot, or rejects naming what is missing.
 *
 * ```ts
 * import { downloadModel, Pipeline } from '@pg25/native'
 * const dir = await downloadModel('playgroundai/playground-v2.5-1024px-aesthetic', {
 *   variant: 'fp16', onProgress: p => console.log(`${p.file}: ${p.fileLoadedBytes} of ${p.fileTotalBytes} bytes (${p.loadedBytes} in all)`)
 * })
 * const pipe = await Pipeline.fromPretrained(dir)
 * ```
 */
export async function downloadModel (id: string, options: DownloadOptions = {}): Promise<string> {
  if (options !== null && typeof options !== 'object') throw new Pg25Error('PG25_INVALID_ARGUMENT', `downloadModel options must be an object, got ${typeof options}`)
  for (const [k, v] of Object.entries(options ?? {})) {
    if (!OPTION_KEYS.has(k)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `downloadModel: unknown option "${k}" (known: ${[...OPTION_KEYS].join(', ')})`)
    if ((k === 'onProgress' || k === 'onWarning') && v !== undefined && typeof v !== 'function') throw new Pg25Error('PG25_INVALID_ARGUMENT', `downloadModel: ${k} must be a function`)
  }
  const t = target(id, options ?? {}, true)
  return isOffline() ? await offlineSnapshot(t) : await fetchSnapshot(t, options ?? {})
}

/**
 * `idOrDir` as fromPretrained reads it: an existing local path, or something not of the form
 * `org/name`, is returned as it is; a Hub id becomes its cached snapshot folder, fetched if the cache
 * lacks any needed file. When the Hub cannot be reached, a complete cached copy is used with a notice.
 * `weights: false` fetches configs and tokenizers only (the config folder of a single-file checkpoint).
 */
export async function resolveModelDir (idOrDir: string, options: DownloadOptions = {}, weights = true): Promise<string> {
  if (typeof idOrDir !== 'string' || !isHubId(idOrDir)) return idOrDir
  if (await fs.lstat(idOrDir).then(() => true, () => false)) return idOrDir
  const t = target(idOrDir, options, weights)
  if (isOffline()) return await offlineSnapshot(t)
  const cached = await t.cache.commitFor(t.revision)
  if (cached !== null && (await missingFromCache(t, cached, true)).length === 0) return t.cache.snapshot(cached)
  try {
    return await fetchSnapshot(t, options)
  } catch (err) {
    if (!(err instanceof Pg25Error && err.code === 'PG25_HUB_NETWORK') || cached === null || (await missingFromCache(t, cached, false)).length > 0) throw err
    const warn = options.onWarning ?? ((m: string) => process.emitWarning(m, { code: 'PG25_NOTICE' }))
    warn(`${err.message}; using the cached copy of ${t.id} (${t.cache.snapshot(cached)})`)
    return t.cache.snapshot(cached)
  }
}
