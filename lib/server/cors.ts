// Cross-origin access for browser front ends: only the origins the operator names (`--cors ORIGIN`,
// createServer({ cors })) get CORS headers and preflight answers; any other origin stays refused, as
// every origin is by default. No cookies are involved (the token travels in a header), so credentials
// are never allowed.
import type http from 'node:http'
import { Pg25Error } from '../errors'
import { show } from '../options'
import { HttpError } from './http'

/** The allowed origins, checked: each a scheme://host[:port] exactly as browsers send it in Origin. */
export function corsOrigins (list: unknown): Set<string> {
  if (list === undefined) return new Set()
  if (!Array.isArray(list)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `cors must be an array of origins, got ${show(list)}`)
  for (const o of list) {
    let ok = false
    try {
      const u = new URL(o as string)
      ok = typeof o === 'string' && (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === o
    } catch {}
    if (!ok) throw new Pg25Error('PG25_INVALID_ARGUMENT',
      `cors: ${show(o)} is not an origin (scheme://host[:port], no path or trailing slash, e.g. http://localhost:3000)`)
  }
  return new Set(list as string[])
}

/** Sets the CORS headers on `res` when the request comes from an allowed origin. */
export function allowOrigin (req: http.IncomingMessage, res: http.ServerResponse, cors: ReadonlySet<string>): void {
  const origin = req.headers.origin
  if (cors.size > 0) res.setHeader('vary', 'Origin')
  if (origin === undefined || !cors.has(origin)) return
  res.setHeader('access-control-allow-origin', origin)
  res.setHeader('access-control-expose-headers', 'x-pg25-seed')
}

/**
 * Answers an OPTIONS request: a preflight from an allowed origin gets 204 with the methods and the
 * headers it asked for; from any other origin, 403 (without CORS headers the browser refuses too).
 */
export function preflight (req: http.IncomingMessage, res: http.ServerResponse, cors: ReadonlySet<string>): void {
  const origin = req.headers.origin
  if (origin === undefined) {
    res.writeHead(204, { allow: 'GET, HEAD, POST, OPTIONS' })
    res.end()
    return
  }
  if (!cors.has(origin)) throw new HttpError(403, 'CROSS_ORIGIN',
    `cross-origin requests are refused (${origin} is not allowed: see --cors)`)
  const asked = req.headers['access-control-request-headers']
  res.writeHead(204, {
    'access-control-allow-methods': 'GET, HEAD, POST, OPTIONS',
    // The headers a page's client sends (the openai SDK adds its x-stainless-* ones): any, for an allowed origin.
    ...(asked !== undefined && /^[\w\-, ]*$/.test(asked) ? { 'access-control-allow-headers': asked } : {}),
    'access-control-max-age': '600'
  })
  res.end()
}
