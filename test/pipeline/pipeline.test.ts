import test from 'ava'
import { Pipeline, Pg25Error, AbortError, TorchGenerator } from '../../lib'
import { TINY, goldenCases, readGolden, relativeError, maxAbsDiff } from '../support/helpers'

let pipe: Pipeline
test.before(async () => { pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' }) })
test.after.always(async () => { await pipe?.dispose() })

for (const c of goldenCases().pipeline as any[]) {
  test.serial(`${c.file}: latents within 1e-3 and the 8-bit image within 1 level of diffusers`, async t => {
    const g = readGolden(c.file)
    const opts = { negativePrompt: c.negative ?? undefined, steps: c.steps, guidanceScale: c.guidance, width: c.w, height: c.h,
      seed: c.seed,
      promptStyle: 'plain' as const }
    const lat = await pipe.generate(c.prompt, { ...opts, outputType: 'latent' })
    t.is(lat.images.length, 0)
    const err = relativeError(lat.latents!, g.latents.data)
    t.true(err <= 1e-3, `latents: ${err}`)
    const r = await pipe.generate(c.prompt, opts)
    t.is(r.seed, c.seed)
    const img = r.images[0]
    t.is(img.width, c.w)
    t.is(img.height, c.h)
    t.is(img.data.length, c.w * c.h * 3)
    const ref8 = g.image.data.map(x => Math.round(Math.min(1, Math.max(0, x)) * 255))
    t.true(maxAbsDiff(img.data, ref8) <= 1, `image: ${maxAbsDiff(img.data, ref8)}`)
    const png = await img.toPNG()
    t.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]) // "PNG"
  })
}

test.serial('the same seed gives the same bytes; given latents equal to the seeded noise give the same result', async t => {
  const a = await pipe.generate('a photo of a cat', { steps: 3, width: 64, height: 64, seed: 5 })
  const b = await pipe.generate('a photo of a cat', { steps: 3, width: 64, height: 64, seed: 5 })
  t.deepEqual(a.images[0].data, b.images[0].data)
  const latents = new TorchGenerator(5).randn([1, 4, 8, 8])
  const c = await pipe.generate('a photo of a cat', { steps: 3, width: 64, height: 64, latents })
  t.deepEqual(a.images[0].data, c.images[0].data)
  const d = await pipe.generate('a photo of a cat', { steps: 3, width: 64, height: 64, seed: 6 })
  t.notDeepEqual(a.images[0].data, d.images[0].data)
})

test.serial('defaults come from the model: size from the UNet sample size, random seed reported', async t => {
  t.deepEqual(pipe.defaultSize, { width: 128, height: 128 })
  const r = await pipe.generate('a cat', { steps: 1, outputType: 'latent' })
  t.is(r.width, 128)
  t.is(r.latents!.length, 4 * 16 * 16)
  t.true(Number.isInteger(r.seed) && r.seed >= 0)
})

test.serial('euler, guidance off, non-square sizes and micro-conditioning all run', async t => {
  const steps: number[] = []
  const r = await pipe.generate('a red fox', { steps: 4, scheduler: 'euler', width: 96, height: 64, seed: 1, onStep: s => steps.push(s.step) })
  t.deepEqual(steps, [1, 2, 3, 4])
  t.is(r.images[0].width, 96)
  t.is(r.images[0].height, 64)
  const off = await pipe.generate('a red fox', { steps: 2, guidanceScale: 1, width: 64, height: 64, seed: 1, outputType: 'latent' })
  t.true(off.latents!.every(Number.isFinite))
  const cond = await pipe.generate('a red fox', { steps: 2, width: 64, height: 64, seed: 1, outputType: 'latent', originalSize: { width: 512, height: 512 }, cropTopLeft: { top: 8, left: 0 } })
  const plain = await pipe.generate('a red fox', { steps: 2, width: 64, height: 64, seed: 1, outputType: 'latent' })
  t.true(relativeError(cond.latents!, plain.latents!) > 1e-6) // time_ids reach the UNet
})

test.serial('onStep reports sigmas from the schedule', async t => {
  const seen: number[] = []
  await pipe.generate('x', { steps: 3, width: 64, height: 64, seed: 0, outputType: 'latent', onStep: s => { t.is(s.steps, 3); seen.push(s.sigma) } })
  t.is(seen.length, 3)
  t.true(Math.abs(seen[0] - 80) < 1e-4)
  t.true(seen[0] > seen[1] && seen[1] > seen[2])
})

test.serial('bad options reject with PG25_INVALID_ARGUMENT before any work', async t => {
  const bad: Array<[object, RegExp]> = [
    [{ width: 100 }, /width must be a multiple of 8/],
    [{ height: 0 }, /height must be a multiple of 8/],
    [{ steps: 0 }, /steps must be an integer/],
    [{ steps: 2.5 }, /steps must be an integer/],
    [{ guidanceScale: -1 }, /guidanceScale must be a number from 0 to 100/],
    [{ guidanceScale: Number.NaN }, /guidanceScale/],
    [{ guidanceScale: Infinity }, /guidanceScale/],
    [{ latents: new Float32Array(10) }, /latents must hold 1x4x16x16 = 1024 values, got 10/],
    [{ scheduler: 'ddim' }, /scheduler must be/],
    [{ seed: -3 }, /seed must be/],
    [{ outputType: 'pil' }, /outputType/],
    [{ negativePrompt: 5 }, /negativePrompt must be a string/]
  ]
  let stepped = false
  for (const [opts, re] of bad) {
    const e = await t.throwsAsync(pipe.generate('a cat', { ...opts, onStep: () => { stepped = true } } as any))
    t.true(e instanceof Pg25Error)
    t.is((e as Pg25Error).code, 'PG25_INVALID_ARGUMENT')
    t.regex(e.message, re)
  }
  t.false(stepped)
})

test.serial('timers keep firing while generate runs (native work is off the event loop)', async t => {
  let ticks = 0
  const timer = setInterval(() => { ticks++ }, 5)
  const start = Date.now()
  await pipe.generate('a lighthouse', { steps: 8, width: 128, height: 128, seed: 3 })
  const elapsed = Date.now() - start
  clearInterval(timer)
  t.true(elapsed > 50, `run took ${elapsed} ms`)
  t.true(ticks >= Math.floor(elapsed / 5 / 4), `${ticks} ticks in ${elapsed} ms`)
})

test.serial('an AbortSignal stops a run between steps with an AbortError, and the pipeline stays usable', async t => {
  const ac = new AbortController()
  const steps: number[] = []
  const e = await t.throwsAsync(pipe.generate('a cat', { steps: 20, width: 64, height: 64, seed: 1, signal: ac.signal, onStep: s => { steps.push(s.step); if (s.step === 2) ac.abort() } }))
  t.true(e instanceof AbortError)
  t.is(e.name, 'AbortError')
  t.is((e as Pg25Error).code, 'ABORT_ERR')
  t.deepEqual(steps, [1, 2])
  const pre = new AbortController()
  pre.abort()
  await t.throwsAsync(pipe.generate('a cat', { steps: 2, signal: pre.signal }), { name: 'AbortError' })
  const ok = await pipe.generate('a cat', { steps: 2, width: 64, height: 64, seed: 1 })
  t.is(ok.images.length, 1)
})

test.serial('calls on one pipeline run one at a time, in order, each equal to the same call alone', async t => {
  const order: number[] = []
  const runs = [0, 1, 2, 3].map(i => pipe.generate('a cat', { steps: 2, width: 64, height: 64, seed: i, outputType: 'latent', onStep: s => { if (s.step === 1) order.push(i) } }))
  const results = await Promise.all(runs)
  t.deepEqual(order, [0, 1, 2, 3])
  const alone = await pipe.generate('a cat', { steps: 2, width: 64, height: 64, seed: 2, outputType: 'latent' })
  t.deepEqual(results[2].latents, alone.latents)
})

test('dispose releases the model; later calls reject with PG25_DISPOSED; Symbol.asyncDispose works', async t => {
  const p = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  const running = p.generate('a cat', { steps: 30, width: 64, height: 64, seed: 1 })
  const queued = p.generate('a cat', { steps: 2, width: 64, height: 64, seed: 1 })
  await p.dispose()
  const e1 = await t.throwsAsync(running)
  t.is((e1 as Pg25Error).code, 'PG25_DISPOSED')
  const e2 = await t.throwsAsync(queued)
  t.is((e2 as Pg25Error).code, 'PG25_DISPOSED')
  const e3 = await t.throwsAsync(p.generate('a cat'))
  t.is((e3 as Pg25Error).code, 'PG25_DISPOSED')
  await p.dispose() // idempotent
  {
    await using q = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
    t.is(q.device, 'cpu')
  }
})

test('loading reports progress, honours an AbortSignal, and device "cuda" without a GPU is a clear error', async t => {
  const seen: string[] = []
  const p = await Pipeline.fromPretrained(TINY, { device: 'cpu', onProgress: e => { if (seen.at(-1) !== e.component) seen.push(e.component!) } })
  t.deepEqual(seen, ['text_encoder', 'text_encoder_2', 'unet', 'vae'])
  await p.dispose()
  const ac = new AbortController()
  const loading = Pipeline.fromPretrained(TINY, { device: 'cpu', signal: ac.signal, onProgress: e => { if (e.component === 'unet') ac.abort() } })
  await t.throwsAsync(loading, { name: 'AbortError' })
  const e = await t.throwsAsync(Pipeline.fromPretrained(TINY, { device: 'cuda' }))
  t.is((e as Pg25Error).code, 'PG25_NO_DEVICE')
  const notices: string[] = []
  const auto = await Pipeline.fromPretrained(TINY, { device: 'auto', onWarning: m => notices.push(m) })
  t.is(auto.device, 'cpu')
  t.is(notices.length, 1)
  t.regex(notices[0], /running on the CPU/)
  await auto.dispose()
})

test('a prompt longer than 77 tokens warns with the dropped words', async t => {
  const warnings: string[] = []
  const p = await Pipeline.fromPretrained(TINY, { device: 'cpu', onWarning: m => warnings.push(m) })
  const long = Array(30).fill('a majestic castle').join(' ') + ' ending words'
  const r = await p.generate(long, { steps: 1, width: 64, height: 64, outputType: 'latent', promptStyle: 'plain' })
  t.is(warnings.length, 1) // once per call, whatever both tokenizers cut
  t.deepEqual(r.warnings, warnings)
  t.regex(warnings[0], /truncated because CLIP can only handle sequences up to 77 tokens: .*ending words/)
  t.deepEqual((await p.generate(long, { steps: 1, width: 64, height: 64, outputType: 'latent' })).warnings, []) // a1111 reads it all
  await p.dispose()
})
