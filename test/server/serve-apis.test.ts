// `pg25 serve` as a process, on one model and as the fleet front (--redis, a worker in this process
// on a real Redis): the openai SDK generates and edits, A1111-shaped requests get A1111-shaped answers,
// --cors answers an allowed origin's preflight, and --log json writes one access-log line per request.
import test from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import OpenAI, { toFile } from 'openai'
import sharp from 'sharp'
import { Pipeline } from '../../lib'
import { startWorker } from '../../lib/fleet/worker'
import { TINY } from '../support/helpers'
import { startRedis, type TestRedis } from '../support/redis'

const CLI = path.join(__dirname, '..', '..', 'lib', 'cli', 'index.js')
const APP = 'http://app.example'
let pipe: Pipeline
let redis: TestRedis
test.before(async () => {
  pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  redis = await startRedis()
})
test.after.always(async () => {
  await pipe?.dispose()
  await redis?.stop()
})

interface Served { base: string, stdout: string[], stop: () => Promise<void> }

/** Starts `pg25 serve ARGS --port 0` and waits for its "listening on" line (at most 60 s). */
async function serve (args: string[]): Promise<Served> {
  const child: ChildProcess = spawn(process.execPath, [CLI, 'serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const stdout: string[] = []
  let err = ''
  let rest = ''
  child.stdout!.on('data', (d: Buffer) => {
    const parts = (rest + d.toString()).split('\n')
    rest = parts.pop()!
    stdout.push(...parts)
  })
  const exited = new Promise(resolve => child.once('exit', resolve))
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) child.kill('SIGTERM')
    await exited
  }
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pg25 serve did not listen within 60 s:\n${err}`)), 60_000)
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString()
      const m = /listening on (http:\/\/\S+)/.exec(err)
      if (m !== null) { clearTimeout(timer); resolve(m[1]) }
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`pg25 serve exited (${code}):\n${err}`)) })
  }).catch(async e => { await stop(); throw e })
  return { base, stdout, stop }
}

const rgbOf = async (b64: string): Promise<Uint8Array> => new Uint8Array(await sharp(Buffer.from(b64, 'base64')).raw().toBuffer())
const picture = async (): Promise<Buffer> => await sharp({ create: { width: 64, height: 64, channels: 3,
  background: { r: 200, g: 40, b: 90 } } }).png().toBuffer()

/** The SDK's generate and edit, and A1111's txt2img, against `base`, each equal to the local pipeline's. */
async function clients (t: any, base: string): Promise<void> {
  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'k', maxRetries: 0 })
  const gen = await client.images.generate({ prompt: 'a cat', size: '64x64', n: 1, steps: 2, seed: 11 } as any)
  t.deepEqual(await rgbOf(gen.data![0].b64_json!),
    (await pipe.generate('a cat', { width: 64, height: 64, steps: 2, seed: 11 })).images[0].data)
  const image = await picture()
  const edit = await client.images.edit({ image: await toFile(image, 'in.png', { type: 'image/png' }), prompt: 'a dog', steps: 4,
    seed: 12 } as any)
  t.deepEqual(await rgbOf(edit.data![0].b64_json!),
    (await pipe.generate('a dog', { image, strength: 0.75, steps: 4, seed: 12 })).images[0].data)
  const r = await fetch(`${base}/sdapi/v1/txt2img`,
    { method: 'POST', headers: { 'content-type': 'application/json', authorization: '' },
      body: JSON.stringify({ prompt: 'a fox', width: 64, height: 64, steps: 2, seed: 13, batch_size: 1 }) })
  const j = await r.json() as any
  t.is(JSON.parse(j.info).seed, 13)
  t.deepEqual(await rgbOf(j.images[0]), (await pipe.generate('a fox', { width: 64, height: 64, steps: 2, seed: 13 })).images[0].data)
}

test.serial('pg25 serve on one model: the SDK and A1111 requests, --cors, and --log json', async t => {
  const s = await serve(['--model', TINY, '--device', 'cpu', '--cors', APP, '--log', 'json'])
  t.teardown(s.stop)
  await clients(t, s.base)
  const pre = await fetch(`${s.base}/v1/images/generations`,
    { method: 'OPTIONS', headers: { origin: APP, 'access-control-request-method': 'POST' } })
  t.is(pre.status, 204)
  t.is(pre.headers.get('access-control-allow-origin'), APP)
  t.is((await fetch(`${s.base}/v1/images/generations`, { method: 'OPTIONS', headers: { origin: 'http://other.example' } })).status, 403)
  for (let i = 0; i < 100 && s.stdout.length < 5; i++) await new Promise(resolve => setTimeout(resolve, 20))
  const lines = s.stdout.map(l => JSON.parse(l))
  t.true(lines.slice(0, 3).every(l => l.bytes > 1000))
  t.deepEqual(lines.map(l => [l.method, l.path, l.status]), [
    ['POST', '/v1/images/generations', 200], ['POST', '/v1/images/edits', 200], ['POST', '/sdapi/v1/txt2img', 200],
    ['OPTIONS', '/v1/images/generations', 204], ['OPTIONS', '/v1/images/generations', 403]
  ])
})

test.serial('pg25 serve --redis, the fleet front: the same requests, answered by a worker', async t => {
  const worker = await startWorker(pipe, { redis: redis.url, queue: 'apis' })
  const s = await serve(['--redis', redis.url, '--redis-queue', 'apis', '--log', 'text'])
  t.teardown(async () => { await s.stop(); await worker.close(0) })
  await clients(t, s.base)
  for (let i = 0; i < 100 && s.stdout.length < 3; i++) await new Promise(resolve => setTimeout(resolve, 20))
  t.is(s.stdout.length, 3)
  for (const line of s.stdout) t.regex(line, /^\S+ 127\.0\.0\.1 "POST \/\S+" 200 [1-9]\d+ \d+ms$/)
})
