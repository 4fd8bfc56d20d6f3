// The Hugging Face cache as Python's huggingface_hub lays it out, so that a model fetched by diffusers is
// found here and one fetched here is found by diffusers:
//   <cache>/models--<org>--<name>/blobs/<etag>             file contents, named by ETag (sha256 for LFS files)
//   <cache>/models--<org>--<name>/refs/<revision>          the commit a branch or tag pointed at
//   <cache>/models--<org>--<name>/snapshots/<commit>/<path> relative symlinks into blobs/
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Pg25Error } from '../errors'

/** Expands a leading `~` as Python's os.path.expanduser does. */
function expandHome (p: string): string {
  return p === '~' || p.startsWith('~/') || (process.platform === 'win32' && p.startsWith('~\\')) ? path.join(os.homedir(), p.slice(1)) : p
}

function env (name: string, e: NodeJS.ProcessEnv): string | undefined {
  const v = e[name]
  return v === undefined || v === '' ? undefined : expandHome(v)
}

/** $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome (e: NodeJS.ProcessEnv = process.env): string {
  return env('HF_HOME', e) ?? path.join(env('XDG_CACHE_HOME', e) ?? path.join(os.homedir(), '.cache'), 'huggingface')
}

/** $HF_HUB_CACHE, else the legacy $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub. */
export function hubCacheDir (e: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env('HF_HUB_CACHE', e) ?? env('HUGGINGFACE_HUB_CACHE', e) ?? path.join(hfHome(e), 'hub'))
}

/** HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to 1/ON/YES/TRUE, as huggingface_hub reads it. */
export function isOffline (e: NodeJS.ProcessEnv = process.env): boolean {
  const v = e.HF_HUB_OFFLINE || e.TRANSFORMERS_OFFLINE
  return v !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(v.toUpperCase())
}

/** A full commit hash: such a revision needs no refs/ entry. */
export function isCommitHash (revision: string): boolean {
  return /^[0-9a-f]{40}$/.test(revision)
}

/** Hub model ids as huggingface_hub validates them: `org/name`, word characters, `-` and `.`, no `--` or `..`. */
export function isHubId (s: string): boolean {
  return s.length <= 96 && /^[A-Za-z0-9][\w.-]*\/[\w.-]*[A-Za-z0-9_]$/.test(s) && !s.includes('--') && !s.includes('..')
}

/** Bytes a name in the cache may have: filesystems allow 255, and temporary names add a suffix. */
export const MAX_NAME_BYTES = 200

/** Whether each `/`-separated segment of `p` fits MAX_NAME_BYTES. */
export const namesFit = (p: string): boolean => p.split('/').every(seg => Buffer.byteLength(seg) <= MAX_NAME_BYTES)

/** A filesystem failure while fetching `file` into the cache, as a Pg25Error (one already is, unchanged). */
export function cacheFailure (ctx: { id: string }, file: string, err: unknown): Error {
  if (err instanceof Pg25Error) return err
  const e = err as NodeJS.ErrnoException
  const where = `${ctx.id}: ${file}`
  const why = e?.message ?? String(err)
  if (e?.code === 'ENAMETOOLONG') {
    return new Pg25Error('PG25_UNSUPPORTED', `${where}: the name is too long for this filesystem's cache (${why})`, { cause: err })
  }
  return new Pg25Error('PG25_INTERNAL', `${where}: cannot write it into the Hugging Face cache (${why})`, { cause: err })
}

/** One model's folder in the cache. */
export class RepoCache {
  readonly dir: string
  constructor (readonly cacheDir: string, readonly id: string) {
    this.dir = path.join(cacheDir, `models--${id.replace('/', '--')}`)
  }

  blob (etag: string): string { return path.join(this.dir, 'blobs', etag) }
  snapshot (commit: string): string { return path.join(this.dir, 'snapshots', commit) }
  /** huggingface_hub keeps its lock files under <cache>/.locks/<repo folder>/; ours sit beside them under other names. */
  lockFile (etag: string): string { return path.join(this.cacheDir, '.locks', path.basename(this.dir), `${etag}.pg25.lock`) }

  /** The commit `revision` names in the cache: itself when it is a commit hash, else refs/<revision>, else null. */
  async commitFor (revision: string): Promise<string | null> {
    if (isCommitHash(revision)) return revision
    try {
      const commit = (await fs.readFile(path.join(this.dir, 'refs', revision), 'utf8')).trim()
      return isCommitHash(commit) ? commit : null
    } catch {
      return null
    }
  }

  /** Records that `revision` points at `commit` (atomically, as readers may be looking). */
  async writeRef (revision: string, commit: string): Promise<void> {
    if (revision === commit) return
    const ref = path.join(this.dir, 'refs', revision)
    if (await this.commitFor(revision) === commit) return
    try {
      await this.refuseLinkedFolders(path.relative(this.dir, path.dirname(ref)))
      await fs.mkdir(path.dirname(ref), { recursive: true })
      const tmp = `${ref}.${randomBytes(4).toString('hex')}.tmp`
      await fs.writeFile(tmp, commit)
      await fs.rename(tmp, ref)
    } catch (err) {
      throw cacheFailure(this, `refs/${revision}`, err)
    }
  }

  /**
   * Points snapshots/<commit>/<file> at blobs/<etag> with a relative symlink, as huggingface_hub does
   * (the cache can be moved); where symlinks are not allowed (Windows without developer mode) the
   * blob is copied, as huggingface_hub also does. Made under a temporary name and renamed, so
   * concurrent writers agree.
   */
  async link (commit: string, file: string, etag: string): Promise<void> {
    const pointer = path.join(this.snapshot(commit), ...file.split('/'))
    await this.refuseLinkedFolders(path.relative(this.dir, path.dirname(pointer)))
    await fs.mkdir(path.dirname(pointer), { recursive: true })
    const tmp = `${pointer}.${randomBytes(4).toString('hex')}.tmp`
    let linked = false
    try {
      await fs.symlink(path.relative(path.dirname(pointer), this.blob(etag)), tmp)
      // Some file systems (Wine's, some network shares) report success and make no link that resolves.
      linked = (await fs.stat(tmp).catch(() => null))?.isFile() === true
      if (!linked) await fs.rm(tmp, { force: true })
    } catch (err) {
      if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err
    }
    if (!linked) await fs.copyFile(this.blob(etag), tmp)
    try {
      await fs.rename(tmp, pointer)
    } catch (err) {
      // Windows refuses to replace a file another process has open: a concurrent writer's copy of the same
      // blob is already in place, and is as good as ours.
      if (!['EPERM', 'EACCES', 'EBUSY'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err
      const sizes = await Promise.all([pointer, this.blob(etag)].map(async f => (await fs.stat(f).catch(() => null))?.size))
      if (sizes[0] === undefined || sizes[0] !== sizes[1]) throw err
      await fs.rm(tmp, { force: true })
    }
  }

  /**
   * Refuses to write through a folder of ours that is a symbolic link (`rel`: a folder path under the
   * repo's folder, e.g. snapshots/<commit>/unet): the cache's own layout has none, and one planted
   * there would make the download write outside the cache.
   */
  async refuseLinkedFolders (rel: string): Promise<void> {
    let at = this.dir
    for (const seg of rel.split(path.sep)) {
      at = path.join(at, seg)
      const st = await fs.lstat(at).catch(() => null)
      if (st === null) return
      if (st.isSymbolicLink() || !st.isDirectory()) {
        const what = st.isSymbolicLink() ? 'symbolic link' : 'file'
        throw new Pg25Error('PG25_HUB_CORRUPT', `${at}: the Hugging Face cache holds a ${what} where a folder of its own belongs; ` +
          'refusing to write through it (remove it and fetch again)')
      }
    }
  }

  /** Whether snapshots/<commit>/<file> resolves to a regular file. */
  async has (commit: string, file: string): Promise<boolean> {
    try {
      return (await fs.stat(path.join(this.snapshot(commit), ...file.split('/')))).isFile()
    } catch {
      return false
    }
  }

  /** Every file under snapshots/<commit>/, as repo paths with `/` separators. */
  async listSnapshot (commit: string): Promise<string[]> {
    const out: string[] = []
    const walk = async (dir: string, prefix: string): Promise<void> => {
      for (const e of await fs.readdir(dir, { withFileTypes: true })) {
        const rel = prefix + e.name
        const full = path.join(dir, e.name)
        const st = await fs.stat(full).catch(() => null)
        if (st?.isDirectory()) await walk(full, rel + '/')
        else if (st?.isFile()) out.push(rel)
      }
    }
    try {
      await walk(this.snapshot(commit), '')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Pg25Error('PG25_NOT_FOUND', `${this.snapshot(commit)}: cannot read the cached snapshot (${(err as Error).message})`)
    }
    return out.sort()
  }
}
