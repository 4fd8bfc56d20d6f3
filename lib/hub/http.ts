// Requests to the Hub with Node's fetch: every request has a deadline (no hang on a silent server),
// redirects are followed by hand (the Hub's own headers sit on its 302, and the token must not travel
// to the CDN), and refusals become Pg25Errors that say what to do.
import { AbortError, Pg25Error } from '../errors'
import { TOKEN_ADVICE } from './auth'

export interface HubContext {
  /** e.g. https://huggingface.co (no trailing slash) */
  endpoint: string
  id: string
  revision: string
  token?: string
  signal?: AbortSignal
  /** most milliseconds to wait for a response's headers, or between two chunks of a body */
  timeoutMs: number
  /** when set (Date.now() time): no request may go on past it, however its bytes trickle in */
  deadline?: number
}

/** Bytes of a JSON answer (the model-info listing) read at most: a repo of 100,000 files lists in about 20 MB. */
export const MAX_JSON_BYTES = 32 * 2 ** 20

/** What the Hub says about a file on its resolve response (before any redirect). */
export interface FileHeaders {
  commit: string | null
  /** the normalized ETag of the file's contents: the LFS sha256 (X-Linked-Etag), else the git blob id */
  etag: string | null
  /** X-Linked-Size, else Content-Length of an unredirected answer */
  size: number | null
}

const USER_AGENT = `pg25-native; node/${process.versions.node}`

/** $HF_ENDPOINT, else https://huggingface.co. */
export function hubEndpoint (e: NodeJS.ProcessEnv = process.env): string {
  return (e.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '')
}

/** Seconds from an environment variable (huggingface_hub's names), else `fallback`. */
export function timeoutFrom (name: string, fallback: number, e: NodeJS.ProcessEnv = process.env): number {
  const v = Number(e[name])
  return (e[name] !== undefined && v > 0 ? v : fallback) * 1000
}

/** How long (ms) each file's download may take in all, attempts and pauses included (PG25_HUB_FILE_DEADLINE seconds; default 6 hours). */
export function fileDeadlineMs (e: NodeJS.ProcessEnv = process.env): number {
  return timeoutFrom('PG25_HUB_FILE_DEADLINE', 6 * 3600, e)
}

/** Requests one file may take in all (PG25_HUB_FILE_ATTEMPTS; default 20), however many of them bring new bytes. */
export function fileAttempts (e: NodeJS.ProcessEnv = process.env): number {
  const v = Number(e.PG25_HUB_FILE_ATTEMPTS)
  return Number.isInteger(v) && v >= 1 ? v : 20
}

const DEADLINE_ADVICE = 'the download did not end within its deadline (PG25_HUB_FILE_DEADLINE seconds); ' +
  'run it again to go on (large files resume)'

/** `W/"abc"` or `"abc"` -> `abc`, as huggingface_hub names blobs. */
export function normalizeEtag (etag: string | null): string | null {
  return etag === null ? null : etag.replace(/^W\//, '').replace(/^"|"$/g, '')
}

/** One request (and its redirects) with a deadline that is re-armed for every chunk of the body. */
export class HubRequest {
  private readonly ac = new AbortController()
  private timer: NodeJS.Timeout | undefined
  private timedOut: 'timeout' | 'deadline' | false = false
  /** where the last hop went (a CDN, after a redirect) */
  private at: string
  private readonly onAbort = (): void => { this.ac.abort() }

  /** `file`: the repo path fetched, named in messages instead of URLs (a CDN's carry signatures). */
  constructor (private readonly ctx: HubContext, readonly url: string, private readonly file?: string) {
    this.at = url
    if (ctx.signal?.aborted) this.ac.abort()
    else ctx.signal?.addEventListener('abort', this.onAbort, { once: true })
  }

  private arm (): void {
    clearTimeout(this.timer)
    const left = this.ctx.deadline === undefined ? Infinity : Math.max(0, this.ctx.deadline - Date.now())
    const why = left < this.ctx.timeoutMs ? 'deadline' : 'timeout'
    this.timer = setTimeout(() => { this.timedOut = why; this.ac.abort() }, Math.min(left, this.ctx.timeoutMs))
  }

  private get label (): string {
    return this.file !== undefined ? `${this.ctx.id}: ${this.file}` : this.url.replace(/\?.*$/, '')
  }

  private fail (err: unknown, url: string): Error {
    if (this.ctx.signal?.aborted) return new AbortError(undefined, { cause: this.ctx.signal.reason })
    const where = `${this.label}${new URL(url).origin !== new URL(this.url).origin ? ` (from ${new URL(url).origin})` : ''}`
    if (this.timedOut === 'deadline') return new Pg25Error('PG25_HUB_NETWORK', `${where}: ${DEADLINE_ADVICE}`)
    if (this.timedOut) return new Pg25Error('PG25_HUB_NETWORK', `${where}: no answer from the Hub within ${this.ctx.timeoutMs / 1000} s (raise HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT on a slow network)`)
    const cause = (err as { cause?: { code?: string, message?: string } }).cause
    const why = cause?.code ?? cause?.message ?? (err as Error).message
    return new Pg25Error('PG25_HUB_NETWORK', `${where}: cannot reach the Hub (${why}); check the network, or set HF_HUB_OFFLINE=1 to use only the cache`, { cause: err })
  }

  /**
   * Sends the request and follows redirects (5 at most). The token goes only to the Hub's own origin.
   * Returns the final response and the Hub's file headers (from its answer, before any CDN redirect).
   */
  async send (method: 'GET' | 'HEAD', headers: Record<string, string> = {}): Promise<{ res: Response, file: FileHeaders }> {
    let url = this.url
    let file: FileHeaders | undefined
    const origin = new URL(this.ctx.endpoint).origin
    for (let hop = 0; hop <= 5; hop++) {
      const h: Record<string, string> = { 'user-agent': USER_AGENT, 'accept-encoding': 'identity', ...headers }
      if (this.ctx.token !== undefined && new URL(url).origin === origin) h.authorization = `Bearer ${this.ctx.token}`
      this.arm()
      let res: Response
      try {
        res = await fetch(url, { method, headers: h, redirect: 'manual', signal: this.ac.signal })
      } catch (err) {
        this.close()
        throw this.fail(err, url)
      } finally {
        clearTimeout(this.timer)
      }
      const redirected = res.status >= 300 && res.status < 400 && res.headers.has('location')
      const next = redirected ? new URL(res.headers.get('location') as string, url) : null
      // The file headers are the Hub's answer: not a CDN's (whose ETag is its own), nor a relative redirect
      // before it (a renamed repo), unless that already carries X-Repo-Commit.
      if (file === undefined && new URL(url).origin === origin && (next === null || next.origin !== origin || res.headers.has('x-repo-commit'))) {
        const size = res.headers.get('x-linked-size') ?? (redirected ? null : res.headers.get('content-length'))
        file = {
          commit: res.headers.get('x-repo-commit'),
          etag: normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag')),
          size: size === null ? null : Number(size)
        }
      }
      if (next === null) return { res, file: file ?? { commit: null, etag: null, size: null } }
      await res.body?.cancel()
      url = this.at = next.toString()
    }
    this.close()
    throw new Pg25Error('PG25_HUB_NETWORK', `${this.label}: too many redirects`)
  }

  /** The body, chunk by chunk; a stall longer than the timeout or a cut connection throws PG25_HUB_NETWORK. */
  async* body (res: Response): AsyncGenerator<Uint8Array> {
    if (res.body === null) return
    const reader = res.body.getReader()
    try {
      for (;;) {
        this.arm()
        let chunk: Awaited<ReturnType<typeof reader.read>>
        try {
          chunk = await reader.read()
        } catch (err) {
          throw this.fail(err, this.at)
        }
        if (chunk.done) return
        yield chunk.value
      }
    } finally {
      clearTimeout(this.timer)
      reader.cancel().catch(() => {})
      this.close()
    }
  }

  /** The body as JSON, read up to `limit` bytes: an endless answer is cut there, not buffered. */
  async json (res: Response, limit = MAX_JSON_BYTES): Promise<unknown> {
    const parts: Uint8Array[] = []
    let n = 0
    for await (const c of this.body(res)) {
      n += c.byteLength
      if (n > limit) throw new Pg25Error('PG25_HUB_NETWORK', `${this.label}: the Hub's answer passed ${limit} bytes; it was cut there`)
      parts.push(c)
    }
    try {
      return JSON.parse(Buffer.concat(parts).toString('utf8'))
    } catch {
      throw new Pg25Error('PG25_HUB_NETWORK', `${this.label}: the Hub answered with malformed JSON`)
    }
  }

  close (): void {
    clearTimeout(this.timer)
    this.ctx.signal?.removeEventListener('abort', this.onAbort)
  }

  /** The error for a response that is not a success: 401/403 -> PG25_HUB_AUTH, 404 -> PG25_NOT_FOUND. */
  async refusal (res: Response, file?: string): Promise<Pg25Error> {
    await res.body?.cancel()
    this.close()
    const { ctx } = this
    const code = res.headers.get('x-error-code')
    const msg = res.headers.get('x-error-message')
    const detail = `HTTP ${res.status}${msg ? `: ${msg}` : ''}`
    // The Hub answers 401 RepoNotFound for a missing repo when no token is sent (so private repos stay hidden).
    if (code === 'RepoNotFound') {
      return new Pg25Error('PG25_NOT_FOUND', `${ctx.id}: no such model on ${ctx.endpoint} (${detail})${ctx.token === undefined ? `. If it is private, ${TOKEN_ADVICE}` : ''}`)
    }
    if (code === 'RevisionNotFound') return new Pg25Error('PG25_NOT_FOUND', `${ctx.id}: revision "${ctx.revision}" not found on ${ctx.endpoint} (${detail})`)
    if (res.status === 404) {
      return new Pg25Error('PG25_NOT_FOUND', file === undefined ? `${ctx.id}: not found on ${ctx.endpoint} (${detail})` : `${ctx.id}: ${file} not found at revision "${ctx.revision}" (${detail})`)
    }
    if (res.status === 401 || res.status === 403) {
      return new Pg25Error('PG25_HUB_AUTH', ctx.token === undefined ?
        `${ctx.id} is gated or private and no token was given (${detail}): ${TOKEN_ADVICE}. A gated model also needs its conditions accepted at ${ctx.endpoint}/${ctx.id}` :
        `${ctx.id}: the Hub refused the token given (${detail}). Check that the token has read access and, for a gated model, that its account accepted the conditions at ${ctx.endpoint}/${ctx.id}`)
    }
    return new Pg25Error('PG25_HUB_NETWORK', `${this.label}: the Hub answered ${detail}`)
  }
}
