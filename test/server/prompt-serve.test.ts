// promptStyle and prompt warnings through `pg25 serve` and the fleet; prompt bounds keep the server live.
import test from 'ava'
import { execFile } from 'node:child_process'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { readPngText } from '../../lib/image'
import { GenerateQueue } from '../../lib/fleet/queue'
import { startWorker } from '../../lib/fleet/worker'
import { MAX_PROMPT_CHARS } from '../../lib/prompt/chunk'
import { TINY } from '../support/helpers'
import { serveTiny } from '../support/served'
import { startRedis, type TestRedis } from '../support/redis'

const served = serveTiny(test, { queueLimit: 4 })

const post = async (body: unknown): Promise<Response> =>
  await fetch(`${served.bases[0]}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
const LONG = Array(40).fill('a castle').join(', ')
const small = { steps: 1, width: 64, height: 64, seed: 2 }

test.serial('a cut prompt\'s warning comes back once: a warnings field in JSON, a header on PNG', async t => {
  const j = await (await post({ prompt: LONG, ...small, promptStyle: 'plain', response: 'json' })).json() as any
  t.is(j.warnings.length, 1)
  t.regex(j.warnings[0], /truncated because CLIP can only handle sequences up to 77 tokens/)
  const r = await post({ prompt: `${LONG} 東京`, ...small, promptStyle: 'plain' })
  t.is(r.status, 200)
  const header = JSON.parse(r.headers.get('x-pg25-warnings')!)
  t.is(header.length, 1)
  t.regex(header[0], /東京/)
  const quiet = await post({ prompt: LONG, ...small, response: 'json' })
  t.deepEqual((await quiet.json() as any).warnings, [])
  t.is((await post({ prompt: 'a cat', ...small })).headers.get('x-pg25-warnings'), null)
})

test.serial('promptStyle is a request field; the PNG keeps the prompt as written', async t => {
  const prompt = '(red:1.3) cat, [blurry] BREAK a hill'
  const pngs = await Promise.all(['a1111', 'comfy', 'plain'].map(async promptStyle => {
    const r = await post({ prompt, ...small, promptStyle })
    t.is(r.status, 200, promptStyle)
    return Buffer.from(await r.arrayBuffer())
  }))
  for (const png of pngs) t.true(readPngText(png).parameters.startsWith(`${prompt}\n`))
  t.false(pngs[0].equals(pngs[2]))
  const bad = await post({ prompt, ...small, promptStyle: 'compel' })
  t.is(bad.status, 400)
  t.regex((await bad.json() as any).error, /promptStyle must be 'a1111' or 'comfy' or 'plain'/)
})

test.serial('an oversized prompt is a clear 400; /health answers while the largest allowed prompt is read', async t => {
  const big = await post({ prompt: 'x'.repeat(1_000_000), ...small })
  t.is(big.status, 400)
  const e = await big.json() as any
  t.is(e.code, 'PG25_INVALID_ARGUMENT')
  t.regex(e.error, new RegExp(`prompt has 1000000 characters; at most ${MAX_PROMPT_CHARS} are read`))
  const neg = await post({ prompt: 'a', negativePrompt: 'y'.repeat(MAX_PROMPT_CHARS + 1), ...small })
  t.regex((await neg.json() as any).error, /negativePrompt has/)
  // The largest prompt allowed, one word of multibyte symbols (the slowest to tokenize), in each style.
  const largest = '🤖'.repeat(MAX_PROMPT_CHARS / 2)
  for (const promptStyle of ['plain', 'a1111', 'comfy']) {
    const running = post({ prompt: largest, negativePrompt: largest, ...small, promptStyle })
    const health = await fetch(`${served.bases[0]}/health`, { signal: AbortSignal.timeout(2000) })
    t.is(health.status, 200)
    const r = await running
    // Past 8 chunks for a1111/comfy: refused by name; plain cuts it.
    t.is(r.status, promptStyle === 'plain' ? 200 : 400, promptStyle)
  }
})

let redis: TestRedis | undefined
test.after.always(async () => { await redis?.stop() })

test.serial('fleet: promptStyle travels in the job, warnings come back in the result', async t => {
  redis = await startRedis()
  const worker = await startWorker(served.pipe, { redis: redis.url, queue: 'prompts' })
  const fleet = new GenerateQueue({ redis: redis.url, queue: 'prompts' })
  t.teardown(async () => { await fleet.close(); await worker.close() })
  const opts = { ...small, outputType: 'latent' as const }
  const cut = await fleet.generate(LONG, { ...opts, promptStyle: 'plain' })
  t.is(cut.warnings.length, 1)
  t.regex(cut.warnings[0], /truncated/)
  const styled = await fleet.generate('(red:1.5) cat', opts)
  t.deepEqual(styled.warnings, [])
  t.deepEqual(styled.latents, (await served.pipe.generate('(red:1.5) cat', opts)).latents)
  t.notDeepEqual(styled.latents, (await fleet.generate('(red:1.5) cat', { ...opts, promptStyle: 'plain' })).latents)
})

test.serial('the CLI takes --prompt-style: the image of the API with that style; a bad value is one clear line', async t => {
  const run = promisify(execFile)
  const cli = path.join(__dirname, '..', '..', 'lib', 'cli', 'index.js')
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-prompt-cli-'))
  t.teardown(async () => await fs.rm(dir, { recursive: true, force: true }))
  const prompt = '(red:1.4) cat, [dark]'
  const out = path.join(dir, 'c.png')
  await run(process.execPath, [cli, prompt, '--model', TINY, '--device', 'cpu', '--steps', '1', '--width', '64', '--height', '64', '--seed', '2',
    '--prompt-style', 'comfy', '-q', '-o', out])
  const api = await served.pipe.generate(prompt, { ...small, promptStyle: 'comfy' })
  const written = await sharp(out).raw().toBuffer()
  t.true(written.equals(Buffer.from(api.images[0].data)))
  t.true(readPngText(await fs.readFile(out)).parameters.startsWith(`${prompt}\n`))
  const e = await t.throwsAsync(run(process.execPath, [cli, 'x', '--model', TINY, '--prompt-style', 'compel', '-q']))
  t.regex((e as any).stderr, /^pg25: --prompt-style must be 'a1111' or 'comfy' or 'plain'.*\(PG25_INVALID_ARGUMENT\)\n$/)
})
