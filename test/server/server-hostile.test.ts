import test from 'ava'
import type { AddressInfo } from 'node:net'
import net from 'node:net'
import sharp from 'sharp'
import { Pipeline, readPngText } from '../../lib'
import { createServer, type Pg25Server } from '../../lib/server'
import { TINY, declaredPng } from '../support/helpers'

// The server under hostile and careless clients, all on 127.0.0.1 and in bounded waits: no request
// may crash it, hold a slot it does not use, or get the wrong status.
let pipe: Pipeline
let server: Pg25Server
let guarded: Pg25Server
let port: number
let guardedPort: number
const listen = async (s: Pg25Server): Promise<number> => {
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  return (s.address() as AddressInfo).port
}
test.before(async () => {
  pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu', memoryLimit: 128 * 2 ** 20 })
  server = createServer(pipe, {
    queueLimit: 2, maxBodyBytes: 64 * 1024, maxPixels: 1024 * 1024, headersTimeoutMs: 1000, requestTimeoutMs: 2000
  })
  guarded = createServer(pipe, { token: 's3cret' })
  port = await listen(server)
  guardedPort = await listen(guarded)
})
test.after.always(async () => {
  await server?.shutdown(1000)
  await guarded?.shutdown(1000)
  await pipe?.dispose()
})

const JSON_TYPE = { 'content-type': 'application/json' }
const post = async (body: unknown, headers: Record<string, string> = JSON_TYPE, signal?: AbortSignal, to = port): Promise<Response> =>
  await fetch(`http://127.0.0.1:${to}/generate`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body), signal })
const small = { prompt: 'a cat', steps: 1, width: 64, height: 64, seed: 1 }

/** Sends raw bytes and collects what comes back until the server closes or `ms` pass. */
async function raw (
  send: string | string[], o: { halfClose?: boolean, ms?: number, to?: number } = {}
): Promise<{ text: string, closed: boolean }> {
  return await new Promise((resolve, reject) => {
    const sock = net.connect(o.to ?? port, '127.0.0.1')
    let text = ''
    let closed = false
    const timer = setTimeout(() => { sock.destroy(); resolve({ text, closed }) }, o.ms ?? 5000)
    sock.on('data', d => { text += d.toString('latin1') })
    sock.on('error', () => {})
    sock.on('close', () => { closed = true; clearTimeout(timer); resolve({ text, closed }) })
    sock.on('connect', () => {
      for (const part of Array.isArray(send) ? send : [send]) sock.write(part)
      if (o.halfClose === true) sock.end()
    }).on('error', reject)
  })
}

const until = async (cond: () => boolean, ms = 10_000): Promise<boolean> => {
  const end = Date.now() + ms
  while (!cond() && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 20))
  return cond()
}

test.serial('request targets that are not URLs get 404, and the server keeps serving', async t => {
  for (const target of ['//', '//generate', 'http://[', '/%zz', '*']) {
    const r = await raw(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)
    t.regex(r.text, /^HTTP\/1\.1 404 /, target)
  }
  t.is((await fetch(`http://127.0.0.1:${port}/health`)).status, 200)
})

test.serial('an image too large to decode is refused from its header (400), and outputs over --max-pixels get 413', async t => {
  const r = await post({ prompt: 'x', steps: 4, image: declaredPng(16000, 16000).toString('base64') })
  t.is(r.status, 400)
  t.regex((await r.json() as any).error, /is 16000x16000; images up to 8192x8192/)
  const big = await post({ prompt: 'x', steps: 1, width: 1024, height: 1024, count: 2 })
  t.is(big.status, 413)
  t.deepEqual(await big.json(), { error: 'the request asks for 2097152 output pixels (width x height x count); this server allows 1048576', code: 'TOO_MANY_PIXELS' })
  // Sized from the image when it gives no width and height.
  const png = await sharp({ create: { width: 1200, height: 1000, channels: 3, background: 'red' } }).png().toBuffer()
  t.is((await post({ prompt: 'x', steps: 4, image: png.toString('base64') })).status, 413)
})

test.serial('a request the memory cannot hold gets 507 with PG25_OUT_OF_MEMORY', async t => {
  const r = await post({ prompt: 'x', steps: 1, width: 1024, height: 1024 })
  t.is(r.status, 507)
  const j = await r.json() as any
  t.is(j.code, 'PG25_OUT_OF_MEMORY')
  t.regex(j.error, /1024x1024 need about/)
})

test.serial('slow headers and bodies time out with 408 and never hold a queue place', async t => {
  // Two trickling bodies on a queue of two: a real request still runs.
  const slow = [1, 2].map(async () => await raw(['POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n', '{'], { ms: 8000 }))
  await new Promise(resolve => setTimeout(resolve, 200))
  t.is((await post(small)).status, 200)
  for (const r of await Promise.all(slow)) {
    t.true(r.closed)
    t.regex(r.text, /^HTTP\/1\.1 408 /)
  }
  const headers = await raw('POST /generate HTTP/1.1\r\nHost: x\r\n', { ms: 8000 })
  t.true(headers.closed)
  // A run longer than the request timeout is not cut: only receiving the request is timed.
  t.is((await post({ ...small, width: 128, height: 128, steps: 80 })).status, 200)
})

test.serial('health counts a run as running from its start; a queued client that leaves frees its place at once', async t => {
  const long = new AbortController()
  const first = post({ ...small, steps: 400, width: 128, height: 128 }, JSON_TYPE, long.signal).catch(e => e)
  t.true(await until(() => server.stats().running + server.stats().waiting === 1))
  const h = await (await fetch(`http://127.0.0.1:${port}/health`)).json() as any
  t.deepEqual(h.queue, { running: 1, waiting: 0, limit: 2 })
  const queued = new AbortController()
  const second = post(small, JSON_TYPE, queued.signal).catch(e => e)
  t.true(await until(() => server.stats().waiting === 1))
  const cancelled = server.stats().cancelled
  queued.abort()
  await second
  // Its place is free while the first run is still going.
  t.true(await until(() => server.stats().waiting === 0, 3000))
  t.is(server.stats().running, 1)
  t.is(server.stats().cancelled, cancelled + 1)
  long.abort()
  await first
  t.true(await until(() => server.stats().running === 0))
})

test.serial('bad base64 gets 400; an oversized body gets 413 and the connection closes', async t => {
  for (const image of ['', '!!!!', 'aGVsbG8', 'aGVs bG8=']) {
    const r = await post({ prompt: 'x', steps: 4, image })
    t.is(r.status, 400, JSON.stringify(image))
    t.is((await r.json() as any).code, 'PG25_INVALID_ARGUMENT')
  }
  const declared = await raw('POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{"prompt":"')
  t.regex(declared.text, /^HTTP\/1\.1 413 [^]*connection: close[^]*"code":"BODY_TOO_LARGE"/i)
  t.true(declared.closed)
  const chunked = await raw(['POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n', `10000\r\n${'a'.repeat(0x10000)}\r\n`, `10\r\n${'a'.repeat(16)}\r\n`])
  t.regex(chunked.text, /^HTTP\/1\.1 413 /)
  t.true(chunked.closed)
})

test.serial('a client that half-closes after its request still gets its image', async t => {
  const body = JSON.stringify(small)
  const r = await raw(`POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`, { halfClose: true, ms: 15_000 })
  t.regex(r.text, /HTTP\/1\.1 200 OK[^]*content-type: image\/png/i)
  t.true(r.text.includes('IEND'))
})

test.serial('/health takes GET and HEAD only; null fields mean defaults; type errors quote strings', async t => {
  for (const method of ['DELETE', 'POST', 'PUT']) {
    const r = await fetch(`http://127.0.0.1:${port}/health`, { method })
    t.is(r.status, 405, method)
    t.is(r.headers.get('allow'), 'GET, HEAD')
  }
  t.is((await fetch(`http://127.0.0.1:${port}/health`, { method: 'HEAD' })).status, 200)
  const r = await post({ ...small, seed: null, steps: null, count: null, response: null, metadata: null, steps2: undefined })
  t.is(r.status, 200)
  const png = Buffer.from(await r.arrayBuffer())
  t.regex(readPngText(png).parameters, /Steps: 50/)
  t.notRegex(readPngText(png).parameters, /Model:/)
  const bad = await post({ ...small, width: '64' })
  t.is(bad.status, 400)
  t.regex((await bad.json() as any).error, /got "64"/)
})

test('server options are checked', t => {
  for (const bad of [{ queueLimit: 0 }, { maxPixels: -1 }, { headersTimeoutMs: 0.5 }, { token: '' }]) {
    t.throws(() => createServer(pipe, bad), { code: 'PG25_INVALID_ARGUMENT' } as any, JSON.stringify(bad))
  }
})

test.serial('only same-origin JSON is taken; a token, when set, is required', async t => {
  const plain = await post(small, { 'content-type': 'text/plain' })
  t.is(plain.status, 415)
  t.is((await plain.json() as any).code, 'UNSUPPORTED_MEDIA_TYPE')
  const cross = await post(small, { ...JSON_TYPE, origin: 'https://evil.example' })
  t.is(cross.status, 403)
  t.is((await cross.json() as any).code, 'CROSS_ORIGIN')
  t.is((await post(small, { ...JSON_TYPE, 'sec-fetch-site': 'cross-site' })).status, 403)
  t.is((await post(small, { ...JSON_TYPE, origin: `http://127.0.0.1:${port}` })).status, 200)
  const none = await post(small, JSON_TYPE, undefined, guardedPort)
  t.is(none.status, 401)
  t.is(none.headers.get('www-authenticate'), 'Bearer')
  t.is((await post(small, { ...JSON_TYPE, authorization: 'Bearer wrong' }, undefined, guardedPort)).status, 401)
  t.is((await post(small, { ...JSON_TYPE, authorization: 'Bearer s3cret' }, undefined, guardedPort)).status, 200)
})
