// Loading by Hub id against the mock Hub: the first download, the cache layout it leaves (Python's),
// a second load without requests, byte progress, only the needed files, a cache made by hand in
// huggingface_hub's layout, and offline mode.
import anyTest, { type TestFn } from 'ava'
import { createHash } from 'node:crypto'
import { promises as fs, readFileSync } from 'node:fs'
import path from 'node:path'
import { Pipeline, type LoadProgress } from '../../lib'
import { downloadModel, type DownloadProgress } from '../../lib/hub'
import { TINY } from '../support/helpers'
import { resolveModelDir } from '../../lib/hub/resolve'
import { FP16_WEIGHTS, ID, UNNEEDED, repoDir, useMockHub } from '../support/hub-fixture'
import { SYMLINKS } from '../support/symlinks'

const test = anyTest as TestFn
const env = useMockHub(test)
const GEN = { steps: 2, width: 64, height: 64, seed: 7 }
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
const gitBlobId = (b: Buffer): string => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex')

async function imageFrom (dir: string): Promise<Uint8Array> {
  const pipe = await Pipeline.fromPretrained(dir, { device: 'cpu', variant: 'fp16' })
  try {
    return (await pipe.generate('a cat in a spacesuit', GEN)).images[0].data
  } finally {
    await pipe.dispose()
  }
}

/** Every file of tiny-pg25, as repo paths. */
async function tinyFiles (dir = TINY, prefix = ''): Promise<string[]> {
  const out: string[] = []
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...await tinyFiles(path.join(dir, e.name), `${prefix}${e.name}/`))
    else out.push(`${prefix}${e.name}`)
  }
  return out
}

test.serial('a Hub id loads into the Python cache layout and generates the same pixels as the local folder; a second load makes no request', async t => {
  const { hub, cache } = env()
  const repo = repoDir(cache)
  const { commit, files } = hub.repos.get(ID)!
  const events: LoadProgress[] = []
  const pipe = await Pipeline.fromPretrained(ID, { device: 'cpu', onProgress: p => events.push(p) })
  let fromHub: Uint8Array
  try {
    t.is(pipe.dir, path.join(repo, 'snapshots', commit))
    // Download events come first and end at their total; then the load's own.
    const firstLoad = events.findIndex(e => e.phase === 'load')
    t.true(firstLoad > 0 && events.slice(firstLoad).every(e => e.phase === 'load'))
    const lastDownload = events[firstLoad - 1]
    t.is(lastDownload.phase, 'download')
    t.is(lastDownload.loadedBytes, lastDownload.totalBytes)
    fromHub = (await pipe.generate('a cat in a spacesuit', GEN)).images[0].data
  } finally {
    await pipe.dispose()
  }
  // Without a variant the full-precision UNet is preferred (as diffusers prefers it): the same values as the fp16 file.
  t.deepEqual(fromHub, await imageFrom(TINY))

  // The layout huggingface_hub writes: refs/main holds the commit, snapshot entries are relative
  // symlinks into blobs/, LFS blobs are named by their sha256 and other blobs by their git blob id.
  t.is(readFileSync(path.join(repo, 'refs', 'main'), 'utf8'), commit)
  const snapshot = await tinyFiles(path.join(repo, 'snapshots', commit))
  const fp16Unet = 'unet/diffusion_pytorch_model.fp16.safetensors'
  t.deepEqual(snapshot.sort(), [...(await tinyFiles()).filter(f => f !== fp16Unet), 'unet/diffusion_pytorch_model.safetensors'].sort())
  for (const f of snapshot) {
    const pointer = path.join(repo, 'snapshots', commit, f)
    const bytes = files.get(f)!.data
    const blob = f.endsWith('.safetensors') ? sha256(bytes) : gitBlobId(bytes)
    if (SYMLINKS) t.is(await fs.readlink(pointer), path.join(...Array(f.split('/').length).fill('..'), '..', 'blobs', blob), f)
    else t.false((await fs.lstat(pointer)).isSymbolicLink(), `${f}: a copy where links do not work`)
    t.true(readFileSync(pointer).equals(bytes), f)
  }
  t.deepEqual((await fs.readdir(path.join(repo, 'blobs'))).filter(b => b.includes('.')), [], 'no partial files left')

  hub.requests.length = 0
  const again = await Pipeline.fromPretrained(ID, { device: 'cpu' })
  await again.dispose()
  t.deepEqual(hub.requests, [], 'a complete cached snapshot is used without asking the Hub')
})

test.serial('downloadModel fetches only what the pipeline needs, each file once, and reports bytes up to the total', async t => {
  const { hub } = env()
  const events: DownloadProgress[] = []
  const dir = await downloadModel(ID, { variant: 'fp16', onProgress: p => events.push(p) })
  const needed = (await tinyFiles()).filter(f => f !== 'model_index.json') // model_index.json is read before the plan is made
  const total = needed.reduce((n, f) => n + readFileSync(path.join(TINY, f)).length, 0)
  for (const f of UNNEEDED) t.is(hub.count(`/${f}`), 0, `${f} is not requested`)
  for (const f of await tinyFiles()) t.is(hub.count(`/resolve/${hub.repos.get(ID)!.commit}/${f}`, 'GET'), 1, `${f} is fetched once, by commit`)
  t.true(events.length > 0)
  t.true(events.every(e => e.phase === 'download' && e.totalBytes === total))
  t.true(events.every((e, i) => i === 0 || e.loadedBytes >= events[i - 1].loadedBytes), 'loadedBytes never goes back')
  t.is(events.at(-1)!.loadedBytes, total)
  for (const f of needed) t.true(events.some(e => e.file === f), `an event names ${f}`)
  t.is(hub.count('/api/models/', 'GET'), 1)

  // Asking again asks the Hub what main holds, but fetches nothing.
  hub.requests.length = 0
  const events2: DownloadProgress[] = []
  t.is(await downloadModel(ID, { variant: 'fp16', onProgress: p => events2.push(p) }), dir)
  t.deepEqual(hub.requests.map(r => r.path), [`/api/models/${ID}/revision/main`])
  t.deepEqual(events2, [])

  // Without a variant the full-precision UNet file is preferred, as diffusers prefers it; the rest is cached.
  hub.requests.length = 0
  await downloadModel(ID)
  t.deepEqual(hub.requests.filter(r => r.path.includes('/resolve/')).map(r => r.path), [`/${ID}/resolve/${hub.repos.get(ID)!.commit}/unet/diffusion_pytorch_model.safetensors`])
})

test.serial('a revision other than main is fetched by commit and recorded in refs/', async t => {
  const { hub, cache } = env()
  const commit = hub.repos.get(ID)!.commit
  const dir = await downloadModel(ID, { revision: 'v2.5', variant: 'fp16' })
  t.is(dir, path.join(repoDir(cache), 'snapshots', commit))
  t.is(readFileSync(path.join(repoDir(cache), 'refs', 'v2.5'), 'utf8'), commit)
  t.is(hub.count('/api/models/test-org/tiny-pg25/revision/v2.5'), 1)
  hub.requests.length = 0
  const pipe = await Pipeline.fromPretrained(ID, { device: 'cpu', variant: 'fp16', revision: commit })
  await pipe.dispose()
  t.deepEqual(hub.requests, [], 'a commit hash needs no refs/ entry and no request')
})

test.serial('a cache laid out by hand as huggingface_hub lays it out is found without any request', async t => {
  const { hub, cache } = env()
  process.env.HF_HUB_CACHE = path.join(env().home, 'elsewhere')
  const repo = repoDir(process.env.HF_HUB_CACHE)
  const commit = '0123456789abcdef0123456789abcdef01234567'
  await fs.mkdir(path.join(repo, 'refs'), { recursive: true })
  await fs.writeFile(path.join(repo, 'refs', 'main'), commit)
  for (const f of await tinyFiles()) {
    const bytes = readFileSync(path.join(TINY, f))
    const blob = f.endsWith('.safetensors') ? sha256(bytes) : gitBlobId(bytes)
    await fs.mkdir(path.join(repo, 'blobs'), { recursive: true })
    await fs.writeFile(path.join(repo, 'blobs', blob), bytes)
    const pointer = path.join(repo, 'snapshots', commit, f)
    await fs.mkdir(path.dirname(pointer), { recursive: true })
    if (SYMLINKS) await fs.symlink(path.relative(path.dirname(pointer), path.join(repo, 'blobs', blob)), pointer)
    else await fs.writeFile(pointer, bytes) // what huggingface_hub writes where links are refused
  }
  const pipe = await Pipeline.fromPretrained(ID, { device: 'cpu', variant: 'fp16' })
  try {
    t.is(pipe.dir, path.join(repo, 'snapshots', commit))
    t.deepEqual((await pipe.generate('a cat in a spacesuit', GEN)).images[0].data, await imageFrom(TINY))
  } finally {
    await pipe.dispose()
  }
  t.deepEqual(hub.requests, [])
  await t.throwsAsync(fs.stat(cache), undefined, 'nothing was written under HF_HOME/hub: HF_HUB_CACHE wins')
})

test.serial('offline: the cached snapshot is used without a request; what is not cached is named', async t => {
  const { hub, cache } = env()
  process.env.HF_HUB_OFFLINE = '1'
  const notCached = await t.throwsAsync(downloadModel(ID, { variant: 'fp16' }), { code: 'PG25_NOT_FOUND' })
  t.regex(notCached!.message, /test-org\/tiny-pg25 \(revision main\) is not in the Hugging Face cache.*HF_HUB_OFFLINE=1.*pg25 download test-org\/tiny-pg25 --variant fp16/)
  await t.throwsAsync(Pipeline.fromPretrained(ID, { device: 'cpu' }), { code: 'PG25_NOT_FOUND', message: /not in the Hugging Face cache/ })
  t.deepEqual(hub.requests, [])

  delete process.env.HF_HUB_OFFLINE
  const dir = await downloadModel(ID, { variant: 'fp16' })
  process.env.HF_HUB_OFFLINE = 'true'
  hub.requests.length = 0
  t.is(await downloadModel(ID, { variant: 'fp16' }), dir)
  const pipe = await Pipeline.fromPretrained(ID, { device: 'cpu', variant: 'fp16' })
  await pipe.dispose()
  t.deepEqual(hub.requests, [])

  // A snapshot missing a weight file and a tokenizer file: both named.
  await fs.unlink(path.join(dir, 'unet', 'diffusion_pytorch_model.fp16.safetensors'))
  await fs.unlink(path.join(dir, 'tokenizer_2', 'merges.txt'))
  const missing = await t.throwsAsync(Pipeline.fromPretrained(ID, { device: 'cpu', variant: 'fp16' }), { code: 'PG25_NOT_FOUND' })
  t.true(missing!.message.includes('tokenizer_2/merges.txt'), missing!.message)
  t.true(missing!.message.includes('unet/diffusion_pytorch_model.fp16.safetensors'), missing!.message)
  t.true(missing!.message.startsWith(`${ID}: the cached snapshot ${path.join(repoDir(cache), 'snapshots')}`), missing!.message)
  t.deepEqual(hub.requests, [])
})

test.serial('a local folder named like an id is a folder; other strings are not ids', async t => {
  const { hub } = env()
  // 'test/..' is not an id (no ".."), and './test-org/x' has a path prefix: both stay local paths.
  await t.throwsAsync(Pipeline.fromPretrained('./test-org/tiny-pg25', { device: 'cpu' }), { code: 'PG25_NOT_FOUND', message: /model directory not found/ })
  await t.throwsAsync(downloadModel('no-slash'), { code: 'PG25_INVALID_ARGUMENT', message: /not a Hub model id/ })
  await t.throwsAsync(downloadModel('a/b/c'), { code: 'PG25_INVALID_ARGUMENT' })
  await t.throwsAsync(downloadModel(ID, { revision: '../../x' }), { code: 'PG25_INVALID_ARGUMENT', message: /revision/ })
  await t.throwsAsync(downloadModel(ID, { revison: 'main' } as any), { code: 'PG25_INVALID_ARGUMENT', message: /unknown option "revison"/ })
  await t.throwsAsync(downloadModel(ID, { token: '' }), { code: 'PG25_INVALID_ARGUMENT', message: /token must be a non-empty string/ })
  t.deepEqual(hub.requests, [])
  // An existing relative folder of the form org/name (dist/test: the compiled tests) is read from disk.
  await t.throwsAsync(Pipeline.fromPretrained('dist/test', { device: 'cpu' }), { code: 'PG25_NOT_FOUND', message: /model_index\.json/ })
  t.deepEqual(hub.requests, [])
})

test.serial('when the Hub cannot be reached, a usable cached copy is loaded with a notice', async t => {
  env()
  const dir = await downloadModel(ID) // without a variant: the full-precision UNet, fp16 files elsewhere
  // The fp16 UNet is not cached, so loading with variant fp16 asks the Hub, which is down.
  process.env.HF_ENDPOINT = 'http://127.0.0.1:9' // the discard port: nothing listens
  const notices: string[] = []
  const pipe = await Pipeline.fromPretrained(ID, { device: 'cpu', variant: 'fp16', onWarning: m => notices.push(m) })
  await pipe.dispose()
  t.is(pipe.dir, dir)
  t.true(notices.some(m => m.includes('cannot reach the Hub') && m.includes(`using the cached copy of ${ID}`)), notices.join('\n'))
  t.true(notices.some(m => m.includes("no 'fp16' variant weights")), notices.join('\n'))
})

test.serial('for a single-file checkpoint\'s config, a Hub id brings configs and tokenizers only', async t => {
  const { hub } = env()
  const dir = await resolveModelDir(ID, {}, false)
  const got = (await tinyFiles(dir)).sort()
  t.deepEqual(got, (await tinyFiles()).filter(f => !f.endsWith('.safetensors')).sort())
  t.is(hub.count('.safetensors'), 0)
  // The weights are fetched when a full load asks for them; the configs are not fetched again.
  hub.requests.length = 0
  await downloadModel(ID, { variant: 'fp16' })
  t.deepEqual(hub.requests.filter(r => r.path.includes('/resolve/')).map(r => r.path.split('/').slice(5).join('/')).sort(), [...FP16_WEIGHTS].sort())
})
