// The Hub when things go wrong: cut and aborted transfers resume with Range and end verified, corrupt
// bytes are refused and not kept, gated/missing repos give their codes, an unreachable or silent Hub
// fails within its timeout, and two processes fetching at once share one set of blobs.
import anyTest, { type TestFn } from 'ava'
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { promises as fs, readFileSync, statSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { promisify } from 'node:util'
import { Pg25Error } from '../../lib'
import { downloadModel } from '../../lib/hub'
import { TINY } from '../support/helpers'
import { FP16_WEIGHTS, GATED, GATED_TOKEN, ID, repoDir, useMockHub } from '../support/hub-fixture'

const test = anyTest as TestFn
const env = useMockHub(test)
const run = promisify(execFile)
const UNET = 'unet/diffusion_pytorch_model.fp16.safetensors'
const VAE = 'vae/diffusion_pytorch_model.fp16.safetensors'
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
const unetBytes = readFileSync(path.join(TINY, UNET))
const cdnGets = (hub: ReturnType<typeof env>['hub'], sha: string): Array<{ range?: string }> => hub.requests.filter(r => r.cdn && r.method === 'GET' && r.path === `/cdn/${sha}`)

test.serial('a transfer cut mid-file is resumed with a Range request and ends verified', async t => {
  const { hub, cache } = env()
  hub.knobs.cut = { file: UNET, bytes: 1_000_000, times: 1 }
  const dir = await downloadModel(ID, { variant: 'fp16' })
  const gets = cdnGets(hub, sha256(unetBytes))
  t.is(gets.length, 2)
  t.is(gets[0].range, undefined)
  const from = Number(/^bytes=(\d+)-$/.exec(gets[1].range ?? '')?.[1])
  t.true(from > 0 && from <= 1_000_000, `resumed from ${gets[1].range}`)
  t.true(readFileSync(path.join(dir, UNET)).equals(unetBytes))
  t.deepEqual((await fs.readdir(path.join(repoDir(cache), 'blobs'))).filter(b => b.endsWith('.incomplete')), [])
})

test.serial('an aborted download leaves its partial file, and the next call resumes it from there', async t => {
  const { hub, cache } = env()
  hub.knobs.slowMs = 5
  const ac = new AbortController()
  const partial = path.join(repoDir(cache), 'blobs', `${sha256(unetBytes)}.incomplete`)
  const partialSize = (): number => { try { return statSync(partial).size } catch { return 0 } }
  // Aborted once some UNet bytes are on disk (events come after each write, at most every 100 ms).
  const err = await t.throwsAsync(downloadModel(ID, { variant: 'fp16', signal: ac.signal, onProgress: p => { if (p.file === UNET && partialSize() > 0) ac.abort() } }))
  t.is(err!.name, 'AbortError')
  const have = (await fs.stat(partial)).size
  t.true(have > 0 && have < unetBytes.length, `partial: ${have} bytes`)

  hub.requests.length = 0
  hub.knobs = {}
  const dir = await downloadModel(ID, { variant: 'fp16' })
  const gets = cdnGets(hub, sha256(unetBytes))
  t.deepEqual(gets.map(g => g.range), [`bytes=${have}-`])
  t.true(readFileSync(path.join(dir, UNET)).equals(unetBytes))
  await t.throwsAsync(fs.stat(partial))
})

test.serial('corrupt bytes are refused naming the file, and nothing of them stays in the cache', async t => {
  const { hub, cache } = env()
  hub.knobs.corrupt = new Set([VAE])
  const vae = readFileSync(path.join(TINY, VAE))
  const err = await t.throwsAsync(downloadModel(ID, { variant: 'fp16' }), { instanceOf: Pg25Error, code: 'PG25_HUB_CORRUPT' })
  t.true(err!.message.includes(VAE), err!.message)
  t.true(err!.message.includes(sha256(vae)), err!.message)
  const blobs = await fs.readdir(path.join(repoDir(cache), 'blobs'))
  t.false(blobs.some(b => b.startsWith(sha256(vae))), 'neither a blob nor a partial file')
  await t.throwsAsync(fs.stat(path.join(repoDir(cache), 'snapshots', hub.repos.get(ID)!.commit, VAE)))
  await t.throwsAsync(fs.stat(path.join(repoDir(cache), 'refs', 'main')), undefined, 'an incomplete snapshot is not recorded as main')

  // A corrupt small file (checked against its git blob id) is refused too; once the Hub serves good bytes, all is well.
  await fs.rm(cache, { recursive: true })
  hub.knobs.corrupt = new Set(['unet/config.json'])
  await t.throwsAsync(downloadModel(ID, { variant: 'fp16' }), { code: 'PG25_HUB_CORRUPT', message: /unet\/config\.json.*git blob id/ })
  hub.knobs = {}
  const dir = await downloadModel(ID, { variant: 'fp16' })
  t.true(readFileSync(path.join(dir, VAE)).equals(vae))
})

test.serial('a Hub answer that contradicts the file listing (another commit) is refused before any byte is kept', async t => {
  const { hub, cache } = env()
  hub.knobs.commit = 'f'.repeat(40)
  const err = await t.throwsAsync(downloadModel(ID, { variant: 'fp16' }), { code: 'PG25_HUB_CORRUPT' })
  t.regex(err!.message, new RegExp(`^${ID}: model_index\\.json: the Hub's answer does not match its file listing \\(commit f{40}, expected ${hub.repos.get(ID)!.commit}\\)`))
  await t.throwsAsync(fs.stat(path.join(repoDir(cache), 'snapshots')))
})

test.serial('a gated repo: PG25_HUB_AUTH saying how to pass a token; the option, HF_TOKEN and the login file all work, and the token never reaches the CDN', async t => {
  const { hub, home } = env()
  const err = await t.throwsAsync(downloadModel(GATED, { variant: 'fp16' }), { instanceOf: Pg25Error, code: 'PG25_HUB_AUTH' })
  for (const s of [GATED, 'HF_TOKEN', '`token` option', 'huggingface-cli login']) t.true(err!.message.includes(s), `${s} in: ${err!.message}`)
  await t.throwsAsync(downloadModel(GATED, { variant: 'fp16', token: 'hf_wrong' }), { code: 'PG25_HUB_AUTH', message: /refused the token/ })

  const dir = await downloadModel(GATED, { variant: 'fp16', token: GATED_TOKEN })
  t.true(readFileSync(path.join(dir, UNET)).equals(unetBytes))
  t.true(hub.requests.filter(r => r.path.includes('/resolve/')).some(r => r.authorization === `Bearer ${GATED_TOKEN}`))
  t.deepEqual(hub.requests.filter(r => r.cdn && r.authorization !== undefined), [])

  await fs.rm(path.join(home, 'hub'), { recursive: true })
  process.env.HF_TOKEN = GATED_TOKEN
  await downloadModel(GATED, { variant: 'fp16' })
  delete process.env.HF_TOKEN
  await fs.rm(path.join(home, 'hub'), { recursive: true })
  await fs.writeFile(path.join(home, 'token'), `${GATED_TOKEN}\n`) // where `huggingface-cli login` puts it
  await downloadModel(GATED, { variant: 'fp16' })
})

test.serial('a missing repo, revision or file: PG25_NOT_FOUND naming it', async t => {
  env()
  const repo = await t.throwsAsync(downloadModel('test-org/no-such-model'), { instanceOf: Pg25Error, code: 'PG25_NOT_FOUND' })
  t.regex(repo!.message, /^test-org\/no-such-model: no such model on http:\/\/127\.0\.0\.1:\d+ \(HTTP 401: Repository not found\)\. If it is private, pass a token/)
  await t.throwsAsync(downloadModel('test-org/no-such-model', { token: 'hf_x' }), { code: 'PG25_NOT_FOUND', message: /HTTP 404/ })
  await t.throwsAsync(downloadModel(ID, { revision: 'v9' }), { code: 'PG25_NOT_FOUND', message: /test-org\/tiny-pg25: revision "v9" not found/ })
})

test.serial('an unreachable Hub and a silent one fail with PG25_HUB_NETWORK, never hang', async t => {
  env()
  const closed = http.createServer()
  await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve))
  const port = (closed.address() as AddressInfo).port
  await new Promise<void>(resolve => closed.close(() => resolve()))
  process.env.HF_ENDPOINT = `http://127.0.0.1:${port}`
  await t.throwsAsync(downloadModel(ID), { code: 'PG25_HUB_NETWORK', message: /cannot reach the Hub \(ECONNREFUSED\)/ })

  // A server that accepts and never answers: the request times out after HF_HUB_ETAG_TIMEOUT seconds.
  const silent = http.createServer(() => {})
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  process.env.HF_ENDPOINT = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`
  process.env.HF_HUB_ETAG_TIMEOUT = '0.5'
  await t.throwsAsync(downloadModel(ID), { code: 'PG25_HUB_NETWORK', message: /no answer from the Hub within 0.5 s/ })
  silent.closeAllConnections()
  silent.close()
})

test.serial('a CDN that stalls mid-download fails after its retries with PG25_HUB_NETWORK, and main is not recorded', async t => {
  const { hub, cache } = env()
  hub.knobs.stall = new Set([VAE])
  process.env.HF_HUB_DOWNLOAD_TIMEOUT = '1' // long enough for every other answer on a loaded machine
  await t.throwsAsync(downloadModel(ID, { variant: 'fp16' }), { code: 'PG25_HUB_NETWORK', message: /^test-org\/tiny-pg25: vae\/diffusion_pytorch_model\.fp16\.safetensors \(from http:\/\/127\.0\.0\.1:\d+\): no answer from the Hub within 1 s/ })
  t.is(cdnGets(hub, sha256(readFileSync(path.join(TINY, VAE)))).length, 5, 'five attempts')
  await t.throwsAsync(fs.stat(path.join(repoDir(cache), 'refs', 'main')))
})

test.serial('two processes fetching the same model at once both succeed, with one set of blobs, each fetched once', async t => {
  const { hub, cache } = env()
  hub.knobs.slowMs = 3 // long enough for the transfers to overlap
  const child = path.join(__dirname, '..', 'support', 'hub-child.js')
  const [a, b] = await Promise.all([run(process.execPath, [child, ID]), run(process.execPath, [child, ID])])
  t.is(a.stdout, b.stdout)
  t.is(a.stdout, path.join(repoDir(cache), 'snapshots', hub.repos.get(ID)!.commit))
  for (const f of FP16_WEIGHTS) {
    const bytes = readFileSync(path.join(TINY, f))
    t.is(cdnGets(hub, sha256(bytes)).length, 1, `${f} fetched once`)
    t.true(readFileSync(path.join(a.stdout, f)).equals(bytes), f)
  }
  const blobs = await fs.readdir(path.join(repoDir(cache), 'blobs'))
  t.deepEqual(blobs.filter(x => x.includes('.')), [], 'no partial or temporary files')
  t.deepEqual(await fs.readdir(path.join(cache, '.locks', 'models--test-org--tiny-pg25')), [], 'locks released')
})

test.serial('pg25 download prints the snapshot folder on stdout and progress on stderr, a line every 10% off a terminal', async t => {
  const { hub, cache } = env()
  const cli = `require(${JSON.stringify(path.join(__dirname, '..', '..', 'lib', 'cli', 'download.js'))}).downloadCommand(process.argv.slice(1)).then(c => { process.exitCode = c })`
  const r = await run(process.execPath, ['-e', cli, ID, '--variant', 'fp16'], { env: process.env })
  t.is(r.stdout, `${path.join(repoDir(cache), 'snapshots', hub.repos.get(ID)!.commit)}\n`)
  const percents = [...r.stderr.matchAll(/^downloading: (\d+)% \(/gm)].map(m => Number(m[1]))
  t.deepEqual(percents.at(-1), 100)
  t.true(percents.every((p, i) => i === 0 || p > percents[i - 1]) && percents.length <= 11, r.stderr)
  const again = await run(process.execPath, ['-e', cli, ID, '--variant', 'fp16', '--quiet'], { env: process.env })
  t.is(again.stderr, '')
  t.is(again.stdout, r.stdout)
  const bad = await t.throwsAsync(run(process.execPath, ['-e', cli, ID, '--varient', 'fp16'], { env: process.env })) as Error & { code: number, stderr: string }
  t.is(bad.code, 2)
  t.regex(bad.stderr, /pg25 download: Unknown option '--varient'/)
  const gated = await t.throwsAsync(run(process.execPath, ['-e', cli, GATED], { env: process.env })) as Error & { code: number, stderr: string }
  t.is(gated.code, 1)
  t.regex(gated.stderr, /pg25 download: test-org\/gated-pg25 is gated.*\(PG25_HUB_AUTH\)/)
})
