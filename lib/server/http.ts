// HTTP plumbing for the server: answers, the status each failure gets, the request path, bounded
// body reading, and the checks that keep a browser page from driving a localhost server.
import { createHash, timingSafeEqual } from 'node:crypto'
import type http from 'node:http'
import { Pg25Error } from '../errors'

/** A refusal with its HTTP status and a stable code for the JSON body. */
export class HttpError extends Error {
  constructor (readonly status: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

export function send (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return
  const text = JSON.stringify(body)
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

/** A failure's status, stable code and message: server refusals keep theirs; Pg25Errors map by code. */
export function describeError (err: unknown): { status: number, code: string, message: string, headers: Record<string, string> } {
  if (err instanceof HttpError) return { status: err.status, code: err.code, message: err.message, headers: err.headers }
  const e = err instanceof Pg25Error ? err : new Pg25Error('PG25_INTERNAL', (err as Error)?.message ?? String(err))
  const status = e.code === 'PG25_INVALID_ARGUMENT' ? 400 : e.code === 'PG25_OUT_OF_MEMORY' ? 507 : e.code === 'PG25_DISPOSED' ? 503 : 500
  return { status, code: e.code, message: e.message, headers: {} }
}

/** The body each API answers a failure with: /generate's `{ error, code }` unless told otherwise. */
export type ErrorBody = (status: number, code: string, message: string) => unknown

const plainError: ErrorBody = (_status, code, message) => ({ error: message, code })

/** The JSON answer for any failure, in the API's own shape. */
export function sendError (res: http.ServerResponse, err: unknown, body: ErrorBody = plainError): void {
  const d = describeError(err)
  send(res, d.status, body(d.status, d.code, d.message), d.headers)
}

/** The path of a request target, without parsing it as a URL (`//` or `http://x` are not URLs to refuse with a crash). */
export function pathOf (target: string | undefined): string {
  const raw = target ?? '/'
  const q = raw.search(/[?#]/)
  return q < 0 ? raw : raw.slice(0, q)
}

/**
 * The whole body, or a 413 as soon as it is known to exceed `limit` (from Content-Length, before a
 * byte is read). The connection closes after a 413, so the rest of an oversized body is never read.
 */
export async function readBody (req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const tooLarge = (): HttpError => new HttpError(413, 'BODY_TOO_LARGE', `the request body exceeds ${limit} bytes (the server's maxBodyBytes, --max-body)`, { connection: 'close' })
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > limit) throw tooLarge()
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) throw tooLarge()
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

const sha = (s: string): Buffer => createHash('sha256').update(s).digest()

/**
 * What a POST must show before its body is read: no cross-origin browser context unless its origin
 * is allowed (`--cors`; a web page could otherwise drive a server on 127.0.0.1), the token when one
 * is set, and a body of one of `types` (JSON by default: a type no page can send without a CORS
 * preflight, which only allowed origins get).
 */
export function checkCaller (req: http.IncomingMessage, token: string | undefined, cors: ReadonlySet<string>,
  types: readonly string[] = ['application/json']): void {
  checkOrigin(req, cors)
  checkToken(req, token)
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
  if (!types.includes(type)) {
    throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE',
      `the body must be sent as ${types.join(' or ')}, not ${JSON.stringify(type || 'untyped')}`)
  }
}

/** Refuses a browser request from another origin than the server's own, unless `cors` allows it. */
export function checkOrigin (req: http.IncomingMessage, cors: ReadonlySet<string>): void {
  const origin = req.headers.origin
  if (origin !== undefined && cors.has(origin)) return
  const site = req.headers['sec-fetch-site']
  if ((site !== undefined && site !== 'same-origin' && site !== 'none') || (origin !== undefined && !sameOrigin(origin, req.headers.host))) {
    throw new HttpError(403, 'CROSS_ORIGIN',
      `cross-origin requests are refused${origin !== undefined ? ` (${origin} is not allowed: see --cors)` : ''}`)
  }
}

/**
 * With a token set: `Authorization: Bearer <token>`, or HTTP Basic with the token as the password
 * (A1111 clients send `--api-auth user:password` that way; the user name is not checked).
 */
export function checkToken (req: http.IncomingMessage, token: string | undefined): void {
  if (token === undefined) return
  const header = req.headers.authorization ?? ''
  let given = /^Bearer (.+)$/.exec(header)?.[1]
  const basic = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header)?.[1]
  if (basic !== undefined) {
    const pair = Buffer.from(basic, 'base64').toString('utf8')
    given = pair.slice(pair.indexOf(':') + 1)
  }
  // Hashes first: equal lengths for timingSafeEqual, and no timing on the token's length.
  if (given === undefined || !timingSafeEqual(sha(given), sha(token))) {
    throw new HttpError(401, 'UNAUTHORIZED', 'a valid "Authorization: Bearer <token>" header is required', { 'www-authenticate': 'Bearer' })
  }
}

function sameOrigin (origin: string, host: string | undefined): boolean {
  try {
    return host !== undefined && new URL(origin).host === host
  } catch {
    return false
  }
}
