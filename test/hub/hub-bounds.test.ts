// The Hub client's bounds: attempts per file (only new bytes count as progress, and never more than
// PG25_HUB_FILE_ATTEMPTS in all), a deadline per file (PG25_HUB_FILE_DEADLINE), bodies cut at the
// announced size, a capped model-info answer, names the filesystem cannot hold, and a cache whose
// snapshot folder was replaced by a symbolic link. Every failure is a Pg25Error.
import anyTest, { type TestFn } from 'ava'
import { createHash } from 'node:crypto'
import { mkdtempSync, promises as fs, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Pg25Error } from '../../lib/errors'
import { downloadFile, downloadModel } from '../../lib/hub'
import { MAX_JSON_BYTES } from '../../lib/hub/http'
import { TINY } from '../support/helpers'
import { ID, repoDir, useMockHub } from '../support/hub-fixture'
import { SYMLINKS } from '../support/symlinks'

const test = anyTest as TestFn
const UNET = 'unet/diffusion_pytorch_model.fp16.safetensors'
const LONG = 'test-org/long-names'
const empty = mkdtempSync(path.join(os.tmpdir(), 'pg25-hub-bounds-'))
const env = useMockHub(test, [{ id: LONG, dir: empty, extra: { [`${'n'.repeat(300)}.safetensors`]: Buffer.alloc(64, 1) } }])
test.after.always(() => { rmSync(empty, { recursive: true, force: true }) })

const unetBytes = readFileSync(path.join(TINY, UNET))
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
const gets = (hub: ReturnType<typeof env>['hub'], part: string): number =>
  hub.requests.filter(r => r.method === 'GET' && r.path.includes(part)).length
const fetchModel = async (): Promise<string> => await downloadModel(ID, { variant: 'fp16' })

test.serial('a small file that sends a few bytes, then fails forever: five attempts after the one that got anywhere', async t => {
  const { hub } = env()
  hub.knobs.brokenSmall = { file: 'unet/config.json', bytes: 10 }
  await t.throwsAsync(fetchModel(), { instanceOf: Pg25Error, code: 'PG25_HUB_NETWORK', message: /unet\/config\.json.*HTTP 500/ })
  t.is(gets(hub, `/resolve/${hub.repos.get(ID)!.commit}/unet/config.json`), 6)
})

test.serial('a CDN that ignores Range and cuts every answer: attempts end, as no answer gets further than the first', async t => {
  const { hub } = env()
  hub.knobs.ignoreRange = true
  hub.knobs.cut = { file: UNET, bytes: 100_000, times: 1000 }
  await t.throwsAsync(fetchModel(), { code: 'PG25_HUB_NETWORK' })
  t.is(gets(hub, `/cdn/${sha256(unetBytes)}`), 6)
})

test.serial('attempts that each bring new bytes stop at PG25_HUB_FILE_ATTEMPTS, and the partial file stays to resume', async t => {
  const { hub, cache } = env()
  process.env.PG25_HUB_FILE_ATTEMPTS = '3'
  hub.knobs.cut = { file: UNET, bytes: 100_000, times: 1000 }
  await t.throwsAsync(fetchModel(), { code: 'PG25_HUB_NETWORK', message: /gave up after 3 attempts \(PG25_HUB_FILE_ATTEMPTS\)/ })
  t.is(gets(hub, `/cdn/${sha256(unetBytes)}`), 3)
  const kept = (await fs.stat(path.join(repoDir(cache), 'blobs', `${sha256(unetBytes)}.incomplete`))).size
  t.true(kept > 0 && kept <= 300_000, `${kept} bytes kept`)
  hub.knobs = {}
  const dir = await fetchModel()
  t.true(readFileSync(path.join(dir, UNET)).equals(unetBytes))
})

test.serial('a transfer that trickles past PG25_HUB_FILE_DEADLINE is stopped there', async t => {
  const { hub } = env()
  process.env.PG25_HUB_FILE_DEADLINE = '0.5'
  hub.knobs.slowMs = 100 // 64 KiB pieces 0.1 s apart, each well within the 10 s per-chunk timeout: the tokenizer's 0.5 MB take 0.8 s
  const message = /^test-org\/tiny-pg25: [\w/.]+: the download did not end within its deadline \(PG25_HUB_FILE_DEADLINE seconds\)/
  await t.throwsAsync(fetchModel(), { code: 'PG25_HUB_NETWORK', message })
})

test.serial('a body that goes on past the announced size is cut there: the file is kept, verified, at its size', async t => {
  const { hub } = env()
  hub.knobs.endless = new Set([UNET])
  const dir = await fetchModel()
  t.true(readFileSync(path.join(dir, UNET)).equals(unetBytes))
})

test.serial(`a model-info answer longer than ${MAX_JSON_BYTES} bytes is cut, not buffered`, async t => {
  const { hub } = env()
  hub.knobs.infoPadding = MAX_JSON_BYTES + 2 ** 20
  const message = new RegExp(`the Hub's answer passed ${MAX_JSON_BYTES} bytes; it was cut there`)
  await t.throwsAsync(fetchModel(), { code: 'PG25_HUB_NETWORK', message })
})

test.serial('names a filesystem cannot hold: a 300-character revision is refused unasked, a listed file left out', async t => {
  const { hub } = env()
  const revision = 'r'.repeat(300)
  const message = /each \/-separated part may be at most 200 bytes/
  await t.throwsAsync(downloadModel(ID, { revision }), { code: 'PG25_INVALID_ARGUMENT', message })
  t.is(hub.requests.length, 0)
  await t.throwsAsync(downloadFile(LONG), { code: 'PG25_NOT_FOUND', message: /holds no \.safetensors file/ })
  const name = `${'n'.repeat(300)}.safetensors`
  await t.throwsAsync(downloadFile(LONG, name), { code: 'PG25_INVALID_ARGUMENT', message: /each name at most 200 bytes/ })
})

// Needs a file system that makes links (not Wine's).
const withLinks = SYMLINKS ? test.serial : test.serial.skip
withLinks('a snapshot folder replaced by a symbolic link out of the cache is refused, and nothing is written there', async t => {
  const { hub, cache, home } = env()
  const outside = await fs.mkdtemp(path.join(home, 'outside-'))
  const snapshots = path.join(repoDir(cache), 'snapshots')
  await fs.mkdir(snapshots, { recursive: true })
  await fs.symlink(outside, path.join(snapshots, hub.repos.get(ID)!.commit))
  const message = /symbolic link where a folder of its own belongs; refusing to write through it/
  await t.throwsAsync(fetchModel(), { instanceOf: Pg25Error, code: 'PG25_HUB_CORRUPT', message })
  t.deepEqual(await fs.readdir(outside), [])
})
