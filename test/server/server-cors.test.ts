// CORS (preflights as a browser sends them), the access log and /health's model and version.
import test from 'ava'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import type { Pipeline } from '../../lib'
import { createServer, type AccessLogEntry } from '../../lib/server'
import { formatAccessLog } from '../../lib/server/access-log'
import { listen, serveTiny } from '../support/served'

const APP = 'http://localhost:3000'
const log: AccessLogEntry[] = []
const served = serveTiny(test, { cors: [APP, 'https://ui.example'], accessLog: e => log.push(e) }, {})
let pipe: Pipeline
let openBase: string
let closedBase: string
test.serial.before(() => {
  ({ pipe, bases: [openBase, closedBase] } = served)
})

const preflight = async (at: string, route: string, origin: string): Promise<Response> => await fetch(`${at}${route}`, {
  method: 'OPTIONS',
  headers: { origin, 'access-control-request-method': 'POST',
    'access-control-request-headers': 'authorization,content-type,x-stainless-os' }
})
const small = JSON.stringify({ prompt: 'a cat', steps: 1, width: 64, height: 64, seed: 1 })

test.serial('an allowed origin gets its preflight answered and its requests\' answers readable', async t => {
  for (const route of ['/generate', '/v1/images/generations', '/sdapi/v1/txt2img']) {
    const p = await preflight(openBase, route, APP)
    t.is(p.status, 204, route)
    t.is(p.headers.get('access-control-allow-origin'), APP)
    t.regex(p.headers.get('access-control-allow-methods') ?? '', /POST/)
    t.is(p.headers.get('access-control-allow-headers'), 'authorization,content-type,x-stainless-os')
    t.is(p.headers.get('access-control-allow-credentials'), null)
  }
  const r = await fetch(`${openBase}/generate`,
    { method: 'POST', headers: { origin: APP, 'sec-fetch-site': 'cross-site', 'content-type': 'application/json' }, body: small })
  t.is(r.status, 200)
  t.is(r.headers.get('access-control-allow-origin'), APP)
  t.is(r.headers.get('access-control-expose-headers'), 'x-pg25-seed')
  t.is(r.headers.get('vary'), 'Origin')
  const h = await fetch(`${openBase}/sdapi/v1/options`, { headers: { origin: 'https://ui.example' } })
  t.is(h.headers.get('access-control-allow-origin'), 'https://ui.example')
})

test.serial('any other origin is refused, preflight and request alike, with no CORS headers; by default every origin is', async t => {
  const evil = await preflight(openBase, '/generate', 'https://evil.example')
  t.is(evil.status, 403)
  t.is(evil.headers.get('access-control-allow-origin'), null)
  const post = await fetch(`${openBase}/generate`,
    { method: 'POST', headers: { origin: 'https://evil.example', 'content-type': 'application/json' }, body: small })
  t.is(post.status, 403)
  t.regex((await post.json() as any).error, /https:\/\/evil\.example is not allowed: see --cors/)
  const byDefault = await preflight(closedBase, '/generate', APP)
  t.is(byDefault.status, 403)
  t.is(byDefault.headers.get('access-control-allow-origin'), null)
  const a1111 = await fetch(`${closedBase}/sdapi/v1/txt2img`,
    { method: 'POST', headers: { origin: APP, 'content-type': 'application/json' }, body: small })
  t.is(a1111.status, 403)
  t.is((await a1111.json() as any).error, 'CROSS_ORIGIN')
})

test('cors origins are checked', t => {
  for (const bad of [['http://localhost:3000/'], ['localhost:3000'], ['ftp://x.example'], 'http://a.example', [5]]) {
    t.throws(() => createServer(pipe, { cors: bad as any }), { code: 'PG25_INVALID_ARGUMENT', message: /cors/ } as any, JSON.stringify(bad))
  }
})

test.serial('one access-log entry per request: path without the query, status, bytes, error code; no prompt', async t => {
  log.length = 0
  await (await fetch(`${openBase}/generate?secret=1`,
    { method: 'POST', headers: { 'content-type': 'application/json' }, body: small })).arrayBuffer()
  await (await fetch(`${openBase}/nope`)).arrayBuffer()
  await (await fetch(`${openBase}/generate`,
    { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"prompt":1}' })).arrayBuffer()
  for (let i = 0; i < 100 && log.length < 3; i++) await new Promise(resolve => setTimeout(resolve, 10))
  t.is(log.length, 3)
  const [ok, missing, bad] = log
  t.like(ok, { method: 'POST', path: '/generate', status: 200, remote: '127.0.0.1' })
  t.true(ok.bytes > 100)
  t.is(ok.code, undefined)
  t.like(missing, { method: 'GET', path: '/nope', status: 404, code: 'NOT_FOUND' })
  t.like(bad, { status: 400, code: 'PG25_INVALID_ARGUMENT' })
  t.false(JSON.stringify(log).includes('a cat'))
  t.regex(formatAccessLog(missing, 'text'), /^\d{4}-\d\d-\d\dT[\d:.]+Z 127\.0\.0\.1 "GET \/nope" 404 \d+ \d+ms NOT_FOUND$/)
  t.deepEqual(JSON.parse(formatAccessLog(bad, 'json')), bad)
})

test.serial('/health names the model and the package version', async t => {
  const h = await (await fetch(`${closedBase}/health`)).json() as any
  t.is(h.model, 'tiny-pg25')
  t.is(h.version, JSON.parse(readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')).version)
  const named = createServer(pipe, { modelName: 'playground-v2.5' })
  const at = await listen(named)
  t.teardown(async () => await named.shutdown(100))
  t.is((await (await fetch(`${at}/health`)).json() as any).model, 'playground-v2.5')
})
