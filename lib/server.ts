// pg25 serve: a small HTTP server over one pipeline (Node's own http). POST /generate takes JSON and
// answers with a PNG, or JSON with base64 PNGs; requests wait in a bounded queue (503 when full) and a
// run is cancelled when its client disconnects. GET /health reports the queue.
import http from 'node:http'
import { AbortError, Pg25Error } from './errors'
import type { GenerateOptions, Pipeline } from './pipeline'

export interface ServeOptions {
  /** requests running or waiting at once; more get 503 (default 8) */
  queueLimit?: number
  /** largest request body in bytes (default 1 MB) */
  maxBodyBytes?: number
}

export interface ServerStats { running: number, waiting: number, completed: number, cancelled: number, rejected: number }

/** The JSON body of POST /generate: `prompt` plus any generate() option that JSON can carry. */
export interface GenerateRequest extends Omit<GenerateOptions, 'onStep' | 'signal' | 'latents' | 'image'> {
  prompt: string
  /** base64 PNG/JPEG for image-to-image */
  image?: string
  /** 'png' (default: the first image as image/png) or 'json' (every image, base64, with the seed) */
  response?: 'png' | 'json'
  /** false leaves the parameters chunk out of the PNGs */
  metadata?: boolean
}

const ALLOWED = new Set(['prompt', 'negativePrompt', 'prompt2', 'negativePrompt2', 'width', 'height', 'steps', 'guidanceScale', 'scheduler',
  'seed', 'count', 'strength', 'image', 'outputType', 'originalSize', 'cropTopLeft', 'targetSize', 'response', 'metadata'])

function send (res: http.ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) return
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

async function readBody (req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) throw new Pg25Error('PG25_INVALID_ARGUMENT', `request body exceeds ${limit} bytes`)
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

/**
 * An http.Server answering /generate and /health for `pipe`. Listen on it yourself.
 *
 * ```ts
 * const server = createServer(await Pipeline.fromPretrained(dir), { queueLimit: 4 })
 * server.listen(8080)
 * // curl -s localhost:8080/generate -d '{"prompt":"a cat","seed":1}' > cat.png
 * ```
 */
export function createServer (pipe: Pipeline, options: ServeOptions = {}): http.Server & { stats(): ServerStats } {
  const limit = options.queueLimit ?? 8
  const maxBody = options.maxBodyBytes ?? 1 << 20
  const stats: ServerStats = { running: 0, waiting: 0, completed: 0, cancelled: 0, rejected: 0 }
  let inFlight = 0

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (url.pathname === '/health' && req.method === 'GET') {
      send(res, 200, { status: 'ok', device: pipe.device, queue: { running: stats.running, waiting: stats.waiting, limit }, completed: stats.completed })
      return
    }
    if (url.pathname !== '/generate') { send(res, 404, { error: 'not found', code: 'NOT_FOUND' }); return }
    if (req.method !== 'POST') { send(res, 405, { error: 'use POST', code: 'METHOD_NOT_ALLOWED' }); return }
    if (inFlight >= limit) {
      stats.rejected++
      res.setHeader('retry-after', '1')
      send(res, 503, { error: `the queue is full (${limit} requests)`, code: 'QUEUE_FULL' })
      return
    }
    inFlight++
    stats.waiting++
    let started = false
    const ac = new AbortController()
    // A client that goes away before its answer cancels its run (or its place in the queue).
    res.on('close', () => { if (!res.writableFinished) ac.abort() })
    try {
      let body: GenerateRequest
      try {
        body = JSON.parse((await readBody(req, maxBody)).toString('utf8'))
      } catch (err) {
        throw err instanceof Pg25Error ? err : new Pg25Error('PG25_INVALID_ARGUMENT', 'the body must be JSON')
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new Pg25Error('PG25_INVALID_ARGUMENT', 'the body must be a JSON object')
      for (const k of Object.keys(body)) if (!ALLOWED.has(k)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `unknown field "${k}"`)
      if (typeof body.prompt !== 'string') throw new Pg25Error('PG25_INVALID_ARGUMENT', '"prompt" must be a string')
      const { prompt, response = 'png', image, metadata, ...opts } = body
      if (response !== 'png' && response !== 'json') throw new Pg25Error('PG25_INVALID_ARGUMENT', '"response" must be "png" or "json"')
      if (image !== undefined && typeof image !== 'string') throw new Pg25Error('PG25_INVALID_ARGUMENT', '"image" must be base64 text')
      const r = await pipe.generate(prompt, {
        ...opts,
        image: image === undefined ? undefined : Buffer.from(image, 'base64'),
        signal: ac.signal,
        onStep: () => { if (!started) { started = true; stats.waiting--; stats.running++ } }
      })
      const pngs = await Promise.all(r.images.map(async img => await img.toPNG({ metadata: metadata !== false })))
      if (response === 'json' || pngs.length === 0) {
        send(res, 200, { seed: r.seed, width: r.width, height: r.height, images: pngs.map(p => p.toString('base64')), latents: r.latents ? Buffer.from(r.latents.buffer).toString('base64') : undefined })
      } else if (!res.destroyed) {
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': pngs[0].length, 'x-pg25-seed': String(r.seed) })
        res.end(pngs[0])
      }
      stats.completed++
    } catch (err) {
      if (err instanceof AbortError) { stats.cancelled++; return }
      const e = err as Pg25Error
      const status = e.code === 'PG25_INVALID_ARGUMENT' ? 400 : e.code === 'PG25_OUT_OF_MEMORY' ? 507 : 500
      send(res, status, { error: e.message, code: e.code ?? 'PG25_INTERNAL' })
    } finally {
      inFlight--
      if (started) stats.running--
      else stats.waiting--
    }
  }

  const server = http.createServer((req, res) => { void handle(req, res) }) as http.Server & { stats(): ServerStats }
  server.stats = () => ({ ...stats })
  return server
}
