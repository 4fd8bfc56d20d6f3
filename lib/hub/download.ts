// Fetching one file of a Hub repository into the cache: resumable, verified, locked, with byte progress.
//
// Why our own code and not @huggingface/hub's downloadFileToCacheDir: that function keeps the Python
// cache layout but reports no progress and cannot resume, and multi-gigabyte UNet weights need both.
// What remains is small (Node's fetch, a Range header, a hash, a lock file) and adds no dependency.
// The protocol is huggingface_hub's (file_download.py): GET /{id}/resolve/{commit}/{path}; small files
// answer directly with ETag = their git blob id; LFS files answer 302 to a CDN with X-Linked-Etag (their
// sha256) and X-Linked-Size; X-Repo-Commit names the commit. Blobs are named by that ETag, partial
// downloads live beside them as `<etag>.incomplete` and resume with `Range: bytes=<have>-`.
import { createHash, randomBytes, type Hash } from 'node:crypto'
import { createReadStream, promises as fs } from 'node:fs'
import path from 'node:path'
import { Pg25Error } from '../errors'
import { cacheFailure, type RepoCache } from './cache'
import { fileAttempts, fileDeadlineMs, HubRequest, type FileHeaders, type HubContext } from './http'
import { acquireLock } from './lock'

/**
 * A progress event while files are fetched: `file` and its own `fileLoadedBytes` of `fileTotalBytes`,
 * and `loadedBytes`/`totalBytes` over all the files this call transfers (model_index.json and shard
 * indexes, read first to plan, are not counted).
 */
export interface DownloadProgress {
  phase: 'download'
  /** the repo path of the file being transferred, e.g. 'unet/diffusion_pytorch_model.fp16.safetensors' */
  file: string
  /** bytes of `file` in hand, of its `fileTotalBytes` */
  fileLoadedBytes: number
  fileTotalBytes: number
  loadedBytes: number
  totalBytes: number
}

/** A file as the model-info API lists it. */
export interface RemoteFile {
  path: string
  size: number | null
  /** the git blob id (sha1 of "blob <size>\0" + content; for LFS files, of the pointer) */
  blobId: string | null
  /** set for LFS files: the content's sha256, also their blob name and ETag */
  sha256: string | null
}

const MAX_ATTEMPTS = 5
const SMALL_FILE_LIMIT = 64 * 2 ** 20

/** Byte counts per file, summed, reported at most every 100 ms and once at the end of each file. */
export class Meter {
  private readonly counted = new Map<string, number>()
  private readonly sizes: Map<string, number>
  readonly total: number
  private loaded = 0
  private last = 0
  /** `files`: those this call fetches, with the sizes the Hub listed */
  constructor (files: Array<{ path: string, size: number | null }>, private readonly onProgress?: (p: DownloadProgress) => void) {
    this.sizes = new Map(files.map(f => [f.path, f.size ?? 0]))
    this.total = files.reduce((n, f) => n + (f.size ?? 0), 0)
  }

  /** Sets how many bytes of `file` are in hand. */
  at (file: string, bytes: number, final = false): void {
    this.loaded += bytes - (this.counted.get(file) ?? 0)
    this.counted.set(file, bytes)
    const now = Date.now()
    if (this.onProgress === undefined || (!final && now - this.last < 100)) return
    this.last = now
    const fileTotalBytes = this.sizes.get(file) ?? bytes
    this.onProgress({ phase: 'download', file, fileLoadedBytes: bytes, fileTotalBytes, loadedBytes: this.loaded, totalBytes: this.total })
  }
}

function fileUrl (ctx: HubContext, commit: string, file: string): string {
  return `${ctx.endpoint}/${ctx.id}/resolve/${commit}/${file.split('/').map(encodeURIComponent).join('/')}`
}

/** Refuses answers that contradict what the model-info API announced for this commit. */
function checkHeaders (ctx: HubContext, commit: string, f: RemoteFile, h: FileHeaders): void {
  const say = (what: string): Pg25Error => new Pg25Error('PG25_HUB_CORRUPT', `${ctx.id}: ${f.path}: the Hub's answer does not match its file listing (${what})`)
  if (h.commit !== null && h.commit !== commit) throw say(`commit ${h.commit}, expected ${commit}`)
  if (f.sha256 !== null && h.etag !== null && h.etag !== f.sha256) throw say(`ETag ${h.etag}, expected the sha256 ${f.sha256}`)
  if (f.size !== null && h.size !== null && h.size !== f.size) throw say(`size ${h.size}, expected ${f.size}`)
}

async function sizeOf (file: string): Promise<number | null> {
  return await fs.stat(file).then(s => s.isFile() ? s.size : null, () => null)
}

/**
 * Runs `attempt` until it succeeds. Network failures are retried with a pause: until MAX_ATTEMPTS fail
 * in a row without progress (`progressed`: the attempt got further into the file than any before it),
 * and never more than ctx's attempt count in all or past its deadline.
 */
async function withRetries<T> (ctx: FileContext, attempt: () => Promise<T>, progressed: () => boolean): Promise<T> {
  for (let stale = 0, total = 1; ; total++) {
    try {
      return await attempt()
    } catch (err) {
      if (!(err instanceof Pg25Error && err.code === 'PG25_HUB_NETWORK')) throw err
      stale = progressed() ? 0 : stale + 1
      const pause = 250 * (stale + 1)
      if (stale >= MAX_ATTEMPTS || Date.now() + pause >= ctx.deadline) throw err
      if (total >= ctx.attempts) {
        const why = `${err.message}; gave up after ${total} attempts (PG25_HUB_FILE_ATTEMPTS); run it again to resume`
        throw new Pg25Error('PG25_HUB_NETWORK', why, { cause: err })
      }
      await new Promise(resolve => setTimeout(resolve, pause))
    }
  }
}

/** A file's fetch: the Hub context with this file's deadline, and its attempt count. */
type FileContext = HubContext & { deadline: number, attempts: number }

const forFile = (ctx: HubContext): FileContext => ({ ...ctx, deadline: Date.now() + fileDeadlineMs(), attempts: fileAttempts() })

/** Tracks the furthest byte any attempt reached: only going past it is progress. */
function furthest (at: () => number): () => boolean {
  let best = at()
  return () => {
    const now = at()
    if (now <= best) return false
    best = now
    return true
  }
}

/**
 * Puts `f` at snapshots/<commit>/<path>, fetching its blob unless the cache has it. LFS files are
 * fetched under the blob's lock, resumed from `<sha256>.incomplete`, and kept only when size and
 * sha256 match; small files are checked against their git blob id.
 */
export async function fetchFile (ctx: HubContext, cache: RepoCache, commit: string, f: RemoteFile, meter?: Meter): Promise<void> {
  try {
    await fetchBlob(ctx, cache, commit, f, meter)
  } catch (err) {
    throw cacheFailure(ctx, f.path, err)
  }
}

async function fetchBlob (ctx: HubContext, cache: RepoCache, commit: string, f: RemoteFile, meter?: Meter): Promise<void> {
  if (f.sha256 === null) {
    await fetchSmall(forFile(ctx), cache, commit, f, meter)
    return
  }
  const blob = cache.blob(f.sha256)
  const partial = `${blob}.incomplete`
  if (await sizeOf(blob) === null) {
    const lock = await acquireLock(cache.lockFile(f.sha256), ctx.signal, async () => { meter?.at(f.path, await sizeOf(partial) ?? 0) })
    try {
      if (await sizeOf(blob) === null) await fetchLfs(forFile(ctx), cache, commit, f, blob, partial, meter)
    } finally {
      await lock.release()
    }
  }
  await cache.link(commit, f.path, f.sha256)
  meter?.at(f.path, f.size ?? await sizeOf(blob) ?? 0, true)
}

async function fetchLfs (ctx: FileContext, cache: RepoCache, commit: string, f: RemoteFile, blob: string, partial: string, meter?: Meter):
Promise<void> {
  const sha256 = f.sha256 as string
  await cache.refuseLinkedFolders('blobs')
  await fs.mkdir(path.dirname(blob), { recursive: true })
  let retriedCorrupt = false
  for (;;) {
    const st: Transfer = { hash: createHash('sha256'), have: await sizeOf(partial) ?? 0 }
    if (f.size !== null && st.have > f.size) { await fs.truncate(partial, 0); st.have = 0 }
    const resumed = st.have > 0
    if (resumed) for await (const chunk of createReadStream(partial, { end: st.have - 1 })) st.hash.update(chunk as Buffer)
    meter?.at(f.path, st.have)
    if (f.size === null || st.have < f.size) {
      // Each attempt continues from what the file holds; the hash is carried across attempts.
      await withRetries(ctx, async () => { await transfer(ctx, commit, f, partial, st, meter) }, furthest(() => st.have))
    }
    const size = await sizeOf(partial) ?? 0
    const digest = st.hash.digest('hex')
    if ((f.size === null || size === f.size) && digest === sha256) {
      await fs.rename(partial, blob)
      return
    }
    // A bad file is never kept: the next attempt (or call) starts from zero, not from corrupt bytes.
    await fs.unlink(partial).catch(() => {})
    meter?.at(f.path, 0)
    if (resumed && !retriedCorrupt) { retriedCorrupt = true; continue }
    throw new Pg25Error('PG25_HUB_CORRUPT', `${ctx.id}: ${f.path}: the download is corrupt (${size !== f.size ? `${size} bytes, expected ${f.size}` : `sha256 ${digest}, expected ${sha256}`}); it was deleted, try again`)
  }
}

/** A partial file's state: its bytes so far and their running sha256. */
interface Transfer { hash: Hash, have: number }

/** One GET from byte `st.have` onwards, appended to `partial`, and cut at the size announced. */
async function transfer (ctx: HubContext, commit: string, f: RemoteFile, partial: string, st: Transfer, meter?: Meter): Promise<void> {
  const req = new HubRequest(ctx, fileUrl(ctx, commit, f.path), f.path)
  const { res, file } = await req.send('GET', st.have > 0 ? { range: `bytes=${st.have}-` } : {})
  if (res.status !== 200 && res.status !== 206) throw await req.refusal(res, f.path)
  try {
    checkHeaders(ctx, commit, f, file)
  } catch (err) {
    req.close()
    await res.body?.cancel()
    throw err
  }
  // The listing's size, else the answer's: bytes past it are never written, so an endless body ends there.
  const size = f.size ?? file.size
  if (size === null || !Number.isSafeInteger(size) || size < 0) {
    req.close()
    await res.body?.cancel()
    throw new Pg25Error('PG25_HUB_CORRUPT', `${ctx.id}: ${f.path}: neither the listing nor the Hub's answer gives the file's size`)
  }
  const start = res.status === 206 ? Number(/^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1]) : 0
  if (start !== st.have) {
    if (start !== 0) { req.close(); await res.body?.cancel(); throw new Pg25Error('PG25_HUB_NETWORK', `${ctx.id}: ${f.path}: asked for bytes from ${st.have}, got a range from ${start}`) }
    // The server ignored the Range header: start over.
    st.hash = createHash('sha256')
    st.have = 0
  }
  const fh = await fs.open(partial, st.have === 0 ? 'w' : 'a')
  try {
    for await (const chunk of req.body(res)) {
      const part = chunk.subarray(0, size - st.have)
      await fh.write(part)
      st.hash.update(part)
      st.have += part.byteLength
      meter?.at(f.path, st.have)
      if (st.have >= size) break
    }
  } finally {
    await fh.close()
  }
}

/** A small (non-LFS) file: fetched whole into memory, checked against its git blob id, renamed into place. */
async function fetchSmall (ctx: FileContext, cache: RepoCache, commit: string, f: RemoteFile, meter?: Meter): Promise<void> {
  let got = 0
  const body = await withRetries(ctx, async () => {
    got = 0
    const req = new HubRequest(ctx, fileUrl(ctx, commit, f.path), f.path)
    const { res, file } = await req.send('GET')
    if (res.status !== 200) throw await req.refusal(res, f.path)
    const parts: Buffer[] = []
    let n = 0
    for await (const chunk of req.body(res)) {
      n += chunk.byteLength
      if (n > (f.size ?? SMALL_FILE_LIMIT)) throw new Pg25Error('PG25_HUB_CORRUPT', `${ctx.id}: ${f.path}: the Hub sent more than the ${f.size ?? SMALL_FILE_LIMIT} bytes announced`)
      parts.push(Buffer.from(chunk))
      got = n
      meter?.at(f.path, n)
    }
    return { bytes: Buffer.concat(parts), file }
  }, furthest(() => got))
  const { bytes, file } = body
  checkHeaders(ctx, commit, f, file)
  if (f.size !== null && bytes.length !== f.size) throw new Pg25Error('PG25_HUB_CORRUPT', `${ctx.id}: ${f.path}: got ${bytes.length} bytes, expected ${f.size}`)
  const oid = createHash('sha1').update(`blob ${bytes.length}\0`).update(bytes).digest('hex')
  if (f.blobId !== null && oid !== f.blobId) throw new Pg25Error('PG25_HUB_CORRUPT', `${ctx.id}: ${f.path}: the download is corrupt (git blob id ${oid}, expected ${f.blobId})`)
  // The blob is named by the ETag, as huggingface_hub names it, unless that is no plain file name.
  const etag = file.etag !== null && /^[\w.-]+$/.test(file.etag) && !/^\.+$/.test(file.etag) ? file.etag : oid
  const blob = cache.blob(etag)
  if (await sizeOf(blob) === null) {
    await cache.refuseLinkedFolders('blobs')
    await fs.mkdir(path.dirname(blob), { recursive: true })
    const tmp = `${blob}.${randomBytes(4).toString('hex')}.incomplete`
    await fs.writeFile(tmp, bytes)
    await fs.rename(tmp, blob)
  }
  await cache.link(commit, f.path, etag)
  meter?.at(f.path, bytes.length, true)
}
