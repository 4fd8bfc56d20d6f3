// A Hugging Face Hub of our own on 127.0.0.1, speaking the protocol huggingface_hub and lib/hub use:
//   GET /api/models/{org}/{name}[/revision/{rev}][?blobs=true]  model info: sha + siblings (sizes, blob ids, LFS sha256)
//   HEAD|GET /{org}/{name}/resolve/{rev}/{path}                  small files: 200 with ETag = git blob id;
//       *.safetensors (LFS): 302 to a CDN-like URL on a second port, with X-Linked-Etag (sha256) and X-Linked-Size
//   GET /cdn/{sha256}                                             the LFS bytes, with Range (206) support
// Every answer carries X-Repo-Commit; refusals carry X-Error-Code / X-Error-Message as the Hub sends them:
// 401 RepoNotFound for an unknown (or private) repo without a token (404 with one), 401/403 GatedRepo,
// 404 RevisionNotFound / EntryNotFound. Knobs let a test cut, corrupt, slow or stall a transfer.
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'

export interface MockRepoSpec {
  /** e.g. 'test-org/tiny-pg25' */
  id: string
  /** a folder whose files the repo holds */
  dir: string
  /** extra files (repo path -> bytes), e.g. ones the pipeline must not download */
  extra?: Record<string, Buffer>
  /** a gated repo: resolve requests need `Authorization: Bearer <token>` (401 without, 403 with another) */
  token?: string
  /** more branch or tag names for the same commit (besides 'main') */
  branches?: string[]
}

export interface MockFile { path: string, data: Buffer, lfs: boolean, sha256: string, blobId: string }

export interface MockRepo { spec: MockRepoSpec, commit: string, files: Map<string, MockFile> }

export interface LoggedRequest { method: string, path: string, range?: string, authorization?: string, cdn: boolean }

/** What a test can make the server do; each field applies to the files whose repo path it names. */
export interface MockKnobs {
  /** end the next `times` CDN responses for `file` after `bytes` bytes (a cut connection) */
  cut?: { file: string, bytes: number, times: number }
  /** serve these files with one byte changed (same headers) */
  corrupt?: Set<string>
  /** never answer CDN requests for these files */
  stall?: Set<string>
  /** send CDN bodies in 64 KiB pieces this many ms apart */
  slowMs?: number
  /** answer resolve requests with this X-Repo-Commit (as if the branch moved under a download) */
  commit?: string
  /** a small file whose first answer ends after `bytes` bytes (a cut connection) and every later one is a 500 */
  brokenSmall?: { file: string, bytes: number }
  /** the CDN ignores Range headers (always 200 from byte 0) */
  ignoreRange?: boolean
  /** CDN bodies of these files go on past their end (zeros, chunked, no Content-Length) until the client stops reading */
  endless?: Set<string>
  /** the model info answer starts with this many bytes of JSON whitespace */
  infoPadding?: number
}

const gitBlobId = (data: Buffer): string => createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex')

function listFiles (dir: string, prefix = ''): string[] {
  return readdirSync(dir).sort().flatMap(n => statSync(path.join(dir, n)).isDirectory() ? listFiles(path.join(dir, n), `${prefix}${n}/`) : [`${prefix}${n}`])
}

export function loadRepo (spec: MockRepoSpec): MockRepo {
  const files = new Map<string, MockFile>()
  const add = (p: string, data: Buffer): void => {
    files.set(p, { path: p, data, lfs: p.endsWith('.safetensors'), sha256: createHash('sha256').update(data).digest('hex'), blobId: gitBlobId(data) })
  }
  for (const p of listFiles(spec.dir)) add(p, readFileSync(path.join(spec.dir, p)))
  for (const [p, data] of Object.entries(spec.extra ?? {})) add(p, data)
  const commit = createHash('sha1').update([...files.values()].map(f => `${f.path} ${f.sha256}`).sort().join('\n')).digest('hex')
  return { spec, commit, files }
}

/**
 * A running mock Hub. Point HF_ENDPOINT at `url`. `requests` logs every request (both ports).
 *
 * ```ts
 * const hub = await MockHub.start([{ id: 'test-org/tiny-pg25', dir: TINY }])
 * process.env.HF_ENDPOINT = hub.url
 * // ... downloadModel('test-org/tiny-pg25') ...
 * await hub.close()
 * ```
 */
export class MockHub {
  readonly requests: LoggedRequest[] = []
  knobs: MockKnobs = {}
  readonly repos: Map<string, MockRepo>
  private cdnBase = ''
  private constructor (repos: MockRepo[], private readonly servers: http.Server[], readonly url: string) {
    this.repos = new Map(repos.map(r => [r.spec.id, r]))
  }

  static async start (specs: MockRepoSpec[]): Promise<MockHub> {
    const servers = [http.createServer(), http.createServer()]
    const ports: number[] = []
    for (const s of servers) {
      await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
      ports.push((s.address() as AddressInfo).port)
    }
    const hub = new MockHub(specs.map(loadRepo), servers, `http://127.0.0.1:${ports[0]}`)
    hub.cdnBase = `http://127.0.0.1:${ports[1]}`
    servers[0].on('request', (req, res) => hub.handle(req, res, false))
    servers[1].on('request', (req, res) => hub.handle(req, res, true))
    return hub
  }

  /** Requests whose path contains `part` (and, when given, whose method is `method`). */
  count (part: string, method?: string): number {
    return this.requests.filter(r => r.path.includes(part) && (method === undefined || r.method === method)).length
  }

  async close (): Promise<void> {
    for (const s of this.servers) {
      s.closeAllConnections()
      await new Promise<void>(resolve => s.close(() => resolve()))
    }
  }

  private refuse (res: http.ServerResponse, status: number, code: string, message: string, commit?: string): void {
    res.writeHead(status, { 'x-error-code': code, 'x-error-message': message, 'content-type': 'application/json', ...(commit ? { 'x-repo-commit': commit } : {}) })
    res.end(JSON.stringify({ error: message }))
  }

  /** The repo and commit a request may see, or undefined after answering with the Hub's refusal. */
  private access (req: http.IncomingMessage, res: http.ServerResponse, id: string, rev: string, api: boolean): MockRepo | undefined {
    const repo = this.repos.get(id)
    const auth = req.headers.authorization
    if (repo === undefined) {
      this.refuse(res, auth === undefined ? 401 : 404, 'RepoNotFound', 'Repository not found')
      return undefined
    }
    // As on the Hub, a gated repo's info is public; its files are not.
    if (!api && repo.spec.token !== undefined && auth !== `Bearer ${repo.spec.token}`) {
      this.refuse(res, auth === undefined ? 401 : 403, 'GatedRepo', `Access to model ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.`)
      return undefined
    }
    if (rev !== 'main' && rev !== repo.commit && !(repo.spec.branches ?? []).includes(rev)) {
      this.refuse(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`)
      return undefined
    }
    return repo
  }

  private handle (req: http.IncomingMessage, res: http.ServerResponse, cdn: boolean): void {
    const u = new URL(req.url ?? '/', 'http://x')
    const p = decodeURIComponent(u.pathname)
    this.requests.push({ method: req.method ?? '', path: p, range: req.headers.range, authorization: req.headers.authorization, cdn })
    if (cdn) { this.serveCdn(req, res, u.pathname.split('/')[2], u.searchParams.get('file') ?? ''); return }
    let m = /^\/api\/models\/([^/]+\/[^/]+)(?:\/revision\/([^/]+))?$/.exec(u.pathname)
    if (m !== null) { this.serveInfo(req, res, m[1], decodeURIComponent(m[2] ?? 'main'), u.searchParams.get('blobs') === 'true'); return }
    m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(u.pathname)
    if (m !== null) { this.serveResolve(req, res, m[1], decodeURIComponent(m[2]), m[3].split('/').map(decodeURIComponent).join('/')); return }
    this.refuse(res, 404, 'EntryNotFound', 'Not found')
  }

  private serveInfo (req: http.IncomingMessage, res: http.ServerResponse, id: string, rev: string, blobs: boolean): void {
    const repo = this.access(req, res, id, rev, true)
    if (repo === undefined) return
    const siblings = [...repo.files.values()].map(f => blobs ?
        { rfilename: f.path, blobId: f.lfs ? gitBlobId(Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${f.sha256}\nsize ${f.data.length}\n`)) : f.blobId, size: f.data.length, ...(f.lfs ? { lfs: { sha256: f.sha256, size: f.data.length, pointerSize: 134 } } : {}) } :
        { rfilename: f.path })
    res.writeHead(200, { 'content-type': 'application/json' })
    const gated = repo.spec.token !== undefined ? 'auto' : false
    const info = { _id: repo.commit.slice(0, 24), id, modelId: id, sha: repo.commit, private: false, gated, disabled: false }
    const body = JSON.stringify({ ...info, library_name: 'diffusers', siblings })
    // Padding goes out as the socket drains: the client, not this server, holds what it reads.
    let pad = this.knobs.infoPadding ?? 0
    const spaces = Buffer.alloc(1 << 20, 0x20)
    const more = (): void => {
      while (pad > 0 && !res.destroyed) {
        const piece = spaces.subarray(0, Math.min(pad, spaces.length))
        pad -= piece.length
        if (!res.write(piece)) { res.once('drain', more); return }
      }
      if (!res.destroyed) res.end(body)
    }
    more()
  }

  private serveResolve (req: http.IncomingMessage, res: http.ServerResponse, id: string, rev: string, file: string): void {
    const repo = this.access(req, res, id, rev, false)
    if (repo === undefined) return
    const f = repo.files.get(file)
    if (f === undefined) { this.refuse(res, 404, 'EntryNotFound', `${file} does not exist on "${rev}"`, repo.commit); return }
    if (f.lfs) {
      res.writeHead(302, {
        location: `${this.cdnBase}/cdn/${f.sha256}?file=${encodeURIComponent(file)}&expires=${Date.now() + 3600_000}`,
        'x-repo-commit': this.knobs.commit ?? repo.commit,
        'x-linked-etag': `"${f.sha256}"`,
        'x-linked-size': String(f.data.length),
        etag: `"${f.sha256}"`,
        'content-length': '0'
      })
      res.end()
      return
    }
    const broken = this.knobs.brokenSmall
    if (broken?.file === file && broken.bytes < 0) { res.writeHead(500, { 'x-repo-commit': repo.commit }); res.end(); return }
    const limit = broken?.file === file ? broken.bytes : undefined
    if (broken?.file === file) broken.bytes = -1
    this.sendBytes(req, res, this.bytesOf(f), { etag: `"${f.blobId}"`, 'x-repo-commit': this.knobs.commit ?? repo.commit }, limit)
  }

  private bytesOf (f: MockFile): Buffer {
    if (!this.knobs.corrupt?.has(f.path)) return f.data
    const bad = Buffer.from(f.data)
    bad[bad.length >> 1] ^= 0xff
    return bad
  }

  private serveCdn (req: http.IncomingMessage, res: http.ServerResponse, sha256: string, file: string): void {
    const f = [...this.repos.values()].flatMap(r => [...r.files.values()]).find(x => x.sha256 === sha256)
    if (f === undefined) { res.writeHead(404); res.end(); return }
    if (this.knobs.stall?.has(f.path)) return
    const cut = this.knobs.cut
    let limit: number | undefined
    if (cut !== undefined && cut.file === file && cut.times > 0) { cut.times--; limit = cut.bytes }
    if (this.knobs.endless?.has(f.path)) { this.sendEndless(res, this.bytesOf(f)); return }
    this.sendBytes(req, res, this.bytesOf(f), { etag: `"${f.sha256}"` }, limit, this.knobs.ignoreRange !== true)
  }

  /** The bytes, then zeros for as long as the client reads. */
  private sendEndless (res: http.ServerResponse, data: Buffer): void {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    const zeros = Buffer.alloc(1 << 16)
    const more = (): void => { while (!res.destroyed && res.write(zeros)); if (!res.destroyed) res.once('drain', more) }
    res.write(data, more)
  }

  /** 200, or 206 for `Range: bytes=N-` / `bytes=N-M` (unless `useRange` is false); `limit` cuts the connection after that many bytes. */
  private sendBytes (req: http.IncomingMessage, res: http.ServerResponse, data: Buffer, headers: Record<string, string>, limit?: number,
    useRange = true): void {
    let body = data
    let status = 200
    const h: Record<string, string> = { ...headers, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' }
    const range = useRange ? req.headers.range : undefined
    if (range !== undefined) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range)
      const start = m ? Number(m[1]) : NaN
      const end = m && m[2] !== '' ? Math.min(Number(m[2]), data.length - 1) : data.length - 1
      if (!(start < data.length && start <= end)) {
        res.writeHead(416, { ...headers, 'content-range': `bytes */${data.length}` })
        res.end()
        return
      }
      body = data.subarray(start, end + 1)
      status = 206
      h['content-range'] = `bytes ${start}-${end}/${data.length}`
    }
    h['content-length'] = String(body.length)
    res.writeHead(status, h)
    if (req.method === 'HEAD') { res.end(); return }
    if (limit !== undefined) {
      res.write(body.subarray(0, limit), () => res.socket?.destroy())
      return
    }
    const slow = this.knobs.slowMs
    if (slow === undefined) { res.end(body); return }
    let at = 0
    const next = (): void => {
      if (res.destroyed) return
      const piece = body.subarray(at, at + 65536)
      at += piece.length
      if (at >= body.length) res.end(piece)
      else res.write(piece, () => setTimeout(next, slow))
    }
    next()
  }
}
