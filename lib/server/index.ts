// pg25 serve: a small HTTP server over one pipeline (Node's own http). POST /generate takes JSON and
// answers with a PNG, or JSON with base64 PNGs; OpenAI's images API (lib/server/openai.ts) and A1111's
// (lib/server/a1111.ts) answer beside it, in their own shapes, through the same admission: one pixel
// limit, one bounded queue (503 when full), one token, and a run cancelled, inside the native work,
// when its client disconnects. GET /health reports the queue. No request may take the process down:
// every handler failure becomes an answer.
import '../node-version' // the '@pg25/native/server' entry point: an old Node is refused here too
import http from 'node:http'
import { AbortError, Pg25Error } from '../errors'
import { show } from '../options'
import { A1111_ROUTES, a1111Error } from './a1111'
import { accessLogger, type AccessLogEntry } from './access-log'
import { DEFAULT_MAX_PIXELS, type ApiContext, type Route, type Runner } from './api'

export { DEFAULT_MAX_PIXELS, type Runner }
import { allowOrigin, corsOrigins, preflight } from './cors'
import { checkCaller, describeError, HttpError, pathOf, readBody, send, sendError, type ErrorBody } from './http'
import { OPENAI_ROUTES, openaiError } from './openai'
import { ProgressBoard } from './progress'
import { parseRequest, requestPixels } from './request'
import { RunQueue } from './run-queue'
import { watchClient } from './client-watch'
import { packageVersion } from '../version'

export type { GenerateRequest } from './request'
export type { AccessLogEntry } from './access-log'

export interface ServeOptions {
  /** requests running or waiting at once; more get 503 (default 8). A request counts once its body is in. */
  queueLimit?: number
  /** largest request body in bytes (default 1 MB); larger ones get 413 */
  maxBodyBytes?: number
  /** most output pixels (width x height x count) one request may ask for (default 4 x 1024 x 1024); more get 413 */
  maxPixels?: number
  /** when set, generation and the APIs need `Authorization: Bearer <token>` (401 without) */
  token?: string
  /** ms a client has to send its request headers (default 10 s) */
  headersTimeoutMs?: number
  /** ms a client has to send its whole request, body included (default 30 s); then 408 */
  requestTimeoutMs?: number
  /** browser origins allowed to call the server (CORS), e.g. ['http://localhost:3000']; default none */
  cors?: string[]
  /** the model name /health, /v1/models and /sdapi/v1/sd-models report (default: the runner's) */
  modelName?: string
  /** called once per request when its answer is done (the CLI's `--log`); never sees prompts or tokens */
  accessLog?: (entry: AccessLogEntry) => void
}

export interface ServerStats { running: number, waiting: number, completed: number, cancelled: number, rejected: number }

export type Pg25Server = http.Server & {
  stats(): ServerStats
  /**
   * Stops accepting, cancels every queued and running request (they get 503), waits for their
   * handlers up to `graceMs` (default 5 s), then closes every connection.
   */
  shutdown(graceMs?: number): Promise<void>
}

/** JSON in ASCII alone (\\uXXXX escapes), so that it can be a header's value. */
const asciiJson = (v: unknown): string =>
  JSON.stringify(v).replace(/[^\x20-\x7e]/g, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)

/** Which API a path belongs to, for the shape of its errors. */
function errorBodyFor (path: string): ErrorBody | undefined {
  if (path.startsWith('/v1/')) return openaiError
  if (path.startsWith('/sdapi/')) return a1111Error
  return undefined
}

/**
 * An http.Server answering /generate, /health, OpenAI's /v1/images/* and A1111's /sdapi/v1/* for
 * `pipe` (a Pipeline, or a GenerateQueue to front a fleet). Listen on it yourself.
 *
 * ```ts
 * const server = createServer(await Pipeline.fromPretrained(dir), { queueLimit: 4 })
 * server.listen(8080)
 * // curl -s localhost:8080/generate -H 'content-type: application/json' -d '{"prompt":"a cat","seed":1}' > cat.png
 * ```
 */
export function createServer (pipe: Runner, options: ServeOptions = {}): Pg25Server {
  for (const k of ['queueLimit', 'maxBodyBytes', 'maxPixels', 'headersTimeoutMs', 'requestTimeoutMs'] as const) {
    const v = options[k]
    if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `${k} must be a positive integer, got ${show(v)}`)
  }
  if (options.token !== undefined && (typeof options.token !== 'string' || options.token === '')) throw new Pg25Error('PG25_INVALID_ARGUMENT', 'token must be a non-empty string')
  if (options.modelName !== undefined &&
    (typeof options.modelName !== 'string' ||
      options.modelName === '')) throw new Pg25Error('PG25_INVALID_ARGUMENT', 'modelName must be a non-empty string')
  if (options.accessLog !== undefined && typeof options.accessLog !== 'function') throw new Pg25Error('PG25_INVALID_ARGUMENT',
    'accessLog must be a function')
  const cors = corsOrigins(options.cors)
  const limit = options.queueLimit ?? 8
  const maxBody = options.maxBodyBytes ?? 1 << 20
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS
  const headersTimeout = options.headersTimeoutMs ?? 10_000
  const requestTimeout = Math.max(options.requestTimeoutMs ?? 30_000, headersTimeout)
  const stats = { completed: 0, cancelled: 0, rejected: 0 }
  const queue = new RunQueue(pipe.parallel ?? 1)
  const progress = new ProgressBoard()
  // Requests past their body: shutdown() cancels them, and waits for their handlers.
  const live = new Map<AbortController, Promise<void>>()
  // Every request's handler until its answer is sent (shutdown lets the last answers out).
  const handling = new Set<Promise<void>>()
  let stopping = false

  const ctx: ApiContext = {
    runner: pipe,
    maxBody,
    token: options.token,
    cors,
    progress,
    model: () => options.modelName ?? pipe.model ?? 'pg25',
    checkPixels (pixels) {
      if (pixels !== null && pixels > maxPixels) {
        throw new HttpError(413, 'TOO_MANY_PIXELS',
          `the request asks for ${pixels} output pixels (width x height x count); this server allows ${maxPixels}`)
      }
    },
    async run (req, res, calls, work) {
      if (stopping) throw new HttpError(503, 'SHUTTING_DOWN', 'the server is shutting down')
      if (queue.running + queue.waiting >= limit) {
        stats.rejected++
        throw new HttpError(503, 'QUEUE_FULL', `the queue is full (${limit} requests)`, { 'retry-after': '1' })
      }
      const ac = new AbortController()
      const unwatch = watchClient(req, res, () => ac.abort())
      let finished!: () => void
      live.set(ac, new Promise(resolve => { finished = resolve }))
      try {
        await queue.turn(ac.signal)
        const tracked = progress.start(calls)
        try {
          const out = await work(async (prompt, o) => {
            const r = await pipe.generate(prompt, { ...o, signal: ac.signal, onStep: s => progress.step(tracked, s) })
            progress.callDone(tracked)
            return r
          })
          stats.completed++
          return out
        } finally {
          progress.end(tracked)
          queue.done()
        }
      } catch (err) {
        if (!(err instanceof AbortError)) throw err
        stats.cancelled++
        if (stopping) throw new HttpError(503, 'SHUTTING_DOWN', 'the server shut down before this request finished')
        return undefined
      } finally {
        unwatch()
        live.delete(ac)
        finished()
      }
    }
  }

  const health: Route = async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'METHOD_NOT_ALLOWED', 'use GET', { allow: 'GET, HEAD' })
    const more = await pipe.health?.()
    send(res, 200, {
      status: stopping ? 'stopping' : 'ok',
      model: ctx.model(),
      version: packageVersion(),
      device: pipe.device,
      queue: { running: queue.running, waiting: queue.waiting, limit },
      completed: stats.completed,
      ...more
    })
  }

  const generate: Route = async (req, res) => {
    if (req.method !== 'POST') throw new HttpError(405, 'METHOD_NOT_ALLOWED', 'use POST', { allow: 'POST' })
    checkCaller(req, options.token, cors)
    const { prompt, options: opts, response, metadata } = parseRequest((await readBody(req, maxBody)).toString('utf8'))
    ctx.checkPixels(await requestPixels(opts, pipe.defaultSize))
    await ctx.run(req, res, 1, async run => {
      const r = await run(prompt, opts)
      const pngs = await Promise.all(r.images.map(async img => await img.toPNG({ metadata })))
      if (response === 'json' || pngs.length === 0) {
        send(res, 200, {
          seed: r.seed,
          width: r.width,
          height: r.height,
          images: pngs.map(p => p.toString('base64')),
          latents: r.latents ? Buffer.from(r.latents.buffer).toString('base64') : undefined,
          warnings: r.warnings ?? []
        })
      } else if (!res.destroyed) {
        const warned = (r.warnings ?? []).length > 0 ? { 'x-pg25-warnings': asciiJson(r.warnings) } : {}
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': pngs[0].length, 'x-pg25-seed': String(r.seed), ...warned })
        res.end(pngs[0])
      }
    })
  }

  const routes: Record<string, Route> = { '/health': health, '/generate': generate, ...OPENAI_ROUTES, ...A1111_ROUTES }
  const log = options.accessLog === undefined ? undefined : accessLogger(options.accessLog)

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> => {
    // Set before any answer, so writeHead merges its headers in and the access log can read content-length.
    res.setHeader('x-content-type-options', 'nosniff')
    allowOrigin(req, res, cors)
    if (req.method === 'OPTIONS') { preflight(req, res, cors); return }
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined
    if (route === undefined) throw new HttpError(404, 'NOT_FOUND', 'not found')
    await route(req, res, ctx)
  }

  const httpOptions = { headersTimeout, requestTimeout, connectionsCheckingInterval: Math.min(1000, headersTimeout / 2) }
  const server = http.createServer(httpOptions, (req, res) => {
    const path = pathOf(req.url)
    const logged = log?.(req, res, path)
    const handled: Promise<void> = handle(req, res, path).catch((err: unknown) => {
      logged?.failed(describeError(err).code)
      try {
        sendError(res, err, errorBodyFor(path))
      } catch {
        res.destroy()
      }
    }).finally(() => handling.delete(handled))
    handling.add(handled)
  }) as Pg25Server
  // Keep answering a client that half-closed after its request (see server/client-watch.ts).
  Object.assign(server, { httpAllowHalfOpen: true })
  server.stats = () => ({ running: queue.running, waiting: queue.waiting, ...stats })
  server.shutdown = async (graceMs = 5000) => {
    stopping = true
    server.close()
    server.closeIdleConnections()
    for (const ac of live.keys()) ac.abort()
    let timer: NodeJS.Timeout | undefined
    const grace = new Promise(resolve => { timer = setTimeout(resolve, graceMs) })
    await Promise.race([Promise.all(live.values()), grace])
    // The cancelled runs' handlers answer them (503) after the runs end: those answers go out before the
    // connections close.
    await Promise.race([Promise.all(handling), grace])
    clearTimeout(timer)
    server.closeAllConnections()
  }
  return server
}
