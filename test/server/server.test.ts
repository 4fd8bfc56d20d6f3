import test from 'ava'
import http from 'node:http'
import sharp from 'sharp'
import { readPngText } from '../../lib'
import { serveTiny } from '../support/served'

const served = serveTiny(test, { queueLimit: 2 })

const post = async (body: unknown, signal?: AbortSignal): Promise<Response> =>
  await fetch(`${served.bases[0]}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), signal })

test.serial('GET /health reports the device and the queue', async t => {
  const r = await fetch(`${served.bases[0]}/health`)
  t.is(r.status, 200)
  const j = await r.json() as any
  t.is(j.status, 'ok')
  t.is(j.device, 'cpu')
  t.deepEqual(j.queue, { running: 0, waiting: 0, limit: 2 })
})

test.serial('POST /generate answers with a PNG equal to the API result', async t => {
  const r = await post({ prompt: 'a cat', steps: 2, width: 64, height: 64, seed: 4 })
  t.is(r.status, 200)
  t.is(r.headers.get('content-type'), 'image/png')
  t.is(r.headers.get('x-pg25-seed'), '4')
  const png = Buffer.from(await r.arrayBuffer())
  t.regex(readPngText(png).parameters, /Seed: 4/)
  const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true })
  const direct = await served.pipe.generate('a cat', { steps: 2, width: 64, height: 64, seed: 4 })
  t.deepEqual(new Uint8Array(data), direct.images[0].data)
})

test.serial('response: json returns every image as base64 with the seed', async t => {
  const r = await post({ prompt: 'a cat', steps: 1, width: 64, height: 64, seed: 5, count: 2, response: 'json', metadata: false })
  t.is(r.status, 200)
  const j = await r.json() as any
  t.is(j.seed, 5)
  t.is(j.images.length, 2)
  const png = Buffer.from(j.images[1], 'base64')
  t.is((await sharp(png).metadata()).width, 64)
  t.deepEqual(readPngText(png), {})
})

test.serial('bad requests get 400 with the error code; unknown paths 404; wrong method 405', async t => {
  for (const [body, re] of [['not json', /must be JSON/], [{ steps: 2 }, /"prompt" must be a string/], [{ prompt: 'x', width: 100 }, /width must be a multiple of 8/], [{ prompt: 'x', bogus: 1 }, /unknown field "bogus"/]] as const) {
    const r = await post(body)
    t.is(r.status, 400)
    const j = await r.json() as any
    t.regex(j.error, re)
    t.is(j.code, 'PG25_INVALID_ARGUMENT')
  }
  t.is((await fetch(`${served.bases[0]}/nope`)).status, 404)
  t.is((await fetch(`${served.bases[0]}/generate`)).status, 405)
})

test.serial('a full queue answers 503, and a client that disconnects cancels its run', async t => {
  // Runs of seconds even on a fast CPU (1,000 steps of the tiny UNet at 128x128), so both are still going when aborted.
  const slow = { prompt: 'a cat', steps: 1000, width: 128, height: 128, seed: 1 }
  const a1 = new AbortController()
  const a2 = new AbortController()
  const r1 = post(slow, a1.signal).catch(e => e)
  const r2 = post(slow, a2.signal).catch(e => e)
  await new Promise(resolve => setTimeout(resolve, 300))
  const full = await post({ prompt: 'x', steps: 1, width: 64, height: 64 })
  t.is(full.status, 503)
  t.is(full.headers.get('retry-after'), '1')
  const before = served.servers[0].stats()
  a1.abort()
  a2.abort()
  await r1
  await r2
  // Both runs end early: the queue drains long before 1,000 steps x 2 could finish.
  const start = Date.now()
  const cancelled = (): number => served.servers[0].stats().cancelled
  while (cancelled() < before.cancelled + 2 && Date.now() - start < 20000) await new Promise(resolve => setTimeout(resolve, 50))
  const after = served.servers[0].stats()
  t.is(after.cancelled, before.cancelled + 2)
  t.is(after.running + after.waiting, 0)
  t.true(after.rejected >= 1)
  const ok = await post({ prompt: 'x', steps: 1, width: 64, height: 64 })
  t.is(ok.status, 200)
})

test.serial('the server keeps serving while it generates (health answers mid-run)', async t => {
  const run = post({ prompt: 'a cat', steps: 30, width: 128, height: 128 })
  await new Promise(resolve => setTimeout(resolve, 100))
  const h = await new Promise<number>((resolve, reject) => http.get(`${served.bases[0]}/health`, res => { res.resume(); resolve(res.statusCode!) }).on('error', reject))
  t.is(h, 200)
  t.is((await run).status, 200)
})
