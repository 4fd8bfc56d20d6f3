// One access-log line per request, written when its answer is done (or its client left): what was
// asked, the status, the bytes and the time taken. Prompts, bodies and tokens are never logged.
import type http from 'node:http'
import { Pg25Error } from '../errors'

export interface AccessLogEntry {
  /** when the request came in, ISO 8601 */
  time: string
  remote: string
  method: string
  path: string
  /** the answer's status; 499 when the client left before one was sent */
  status: number
  /** body bytes sent (every answer states its length) */
  bytes: number
  ms: number
  /** the error code of a failed request */
  code?: string
}

export type AccessLogFormat = 'json' | 'text' | 'none'

/** An entry as one line: JSON, or `time remote "METHOD path" status bytes ms [code]`. */
export function formatAccessLog (e: AccessLogEntry, format: 'json' | 'text'): string {
  if (format === 'json') return JSON.stringify(e)
  return `${e.time} ${e.remote} "${e.method} ${e.path}" ${e.status} ${e.bytes} ${e.ms}ms${e.code !== undefined ? ` ${e.code}` : ''}`
}

export function checkLogFormat (v: string): AccessLogFormat {
  if (v !== 'json' && v !== 'text' && v !== 'none') throw new Pg25Error('PG25_INVALID_ARGUMENT',
    `--log must be json, text or none, got ${JSON.stringify(v)}`)
  return v
}

/** Watches each request's answer and hands `write` its entry once. */
export function accessLogger (write: (e: AccessLogEntry) => void): (req: http.IncomingMessage, res: http.ServerResponse,
  path: string) => { failed: (code: string) => void } {
  return (req, res, path) => {
    const start = Date.now()
    let code: string | undefined
    res.once('close', () => {
      const entry: AccessLogEntry = {
        time: new Date(start).toISOString(),
        remote: req.socket.remoteAddress ?? '',
        method: req.method ?? '',
        // The path only: a query string may carry anything.
        path: path.length > 200 ? `${path.slice(0, 200)}…` : path,
        status: res.writableFinished ? res.statusCode : 499,
        bytes: res.writableFinished ? Number(res.getHeader('content-length') ?? 0) : 0,
        ms: Date.now() - start
      }
      if (code !== undefined) entry.code = code
      try {
        write(entry)
      } catch {}
    })
    return { failed: c => { code = c } }
  }
}
