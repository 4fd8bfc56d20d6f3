import test from 'ava'
import fc from 'fast-check'
import path from 'node:path'
import { CLIPTokenizer, Pipeline, Pg25Error, Runtime } from '../../lib'
import { TINY } from '../support/helpers'

let pipe: Pipeline
let tok1: CLIPTokenizer
let tok2: CLIPTokenizer
test.before(async () => {
  pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu', onWarning: () => {} })
  tok1 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'))
  tok2 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer_2'))
})
test.after.always(async () => { await pipe?.dispose() })

test('tokenizer property: any string gives 77 ids in the vocabulary and never throws', t => {
  const vocabSize = 49408
  fc.assert(fc.property(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ unit: 'binary-ascii', maxLength: 200 })), s => {
    for (const tok of [tok1, tok2]) {
      const { ids } = tok.encodeWithInfo(s)
      if (ids.length !== 77 || ids[0] !== 49406) return false
      if (!ids.every(id => Number.isInteger(id) && id >= 0 && id < vocabSize)) return false
      if (!ids.includes(49407)) return false
    }
    return true
  }), { numRuns: 2000, seed: 7 })
  t.pass()
})

const field = fc.oneof(fc.constant(undefined), fc.integer({ min: -100, max: 5000 }), fc.double({ noNaN: false }),
  fc.string({ maxLength: 5 }), fc.constant(null), fc.boolean(), fc.constant([]))
test('generate property: any invalid option combination rejects cleanly with PG25_INVALID_ARGUMENT before work', async t => {
  let invalid = 0
  let steps = 0
  const options = fc.record({
    width: field, height: field, steps: field, guidanceScale: field, seed: field, count: field, scheduler: field, outputType: field,
    strength: field, latents: fc.constantFrom(undefined, new Float32Array(3))
  }, { requiredKeys: [] })
  await fc.assert(fc.asyncProperty(options, async opts => {
    const cleaned = Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined))
    try {
      await pipe.generate('a cat', { ...cleaned, onStep: () => { steps++ }, outputType: 'latent' } as any)
      return true // a valid combination (rare): it ran
    } catch (err) {
      invalid++
      return err instanceof Pg25Error && err.code === 'PG25_INVALID_ARGUMENT'
    }
  }), { numRuns: 300, seed: 11 })
  t.true(invalid > 250, `${invalid}`)
  t.log(`${invalid} invalid combinations rejected; ${steps} steps ran for the valid ones`)
})

test.serial('no leak: 200 generate calls return backend memory to its baseline and keep RSS flat', async t => {
  const opts = { steps: 2, width: 64, height: 64, seed: 1 }
  for (let i = 0; i < 40; i++) await pipe.generate(i % 2 ? 'a cat' : 'a dog', { ...opts, count: 1 + (i % 3), preview: i % 5 === 0 }) // warm-up
  const baseline = pipe.memory()
  // RSS after a GC every 10 calls; medians of the first and last five samples, as in the load/dispose test
  // below, so one late collection (or a busy machine's allocator) cannot pass for a leak or hide one.
  const rss: number[] = []
  for (let i = 0; i < 200; i++) {
    await pipe.generate(i % 2 ? 'a cat' : 'a dog', { ...opts, seed: i, count: 1 + (i % 3), preview: i % 5 === 0 })
    t.is(pipe.memory().host, baseline.host, `call ${i} left tensors behind`)
    if (i % 10 === 9) {
      global.gc?.()
      rss.push(process.memoryUsage.rss())
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const first = median(rss.slice(0, 5))
  const last = median(rss.slice(-5))
  const growth = (last - first) / first
  t.log(`RSS median ${(first / 2 ** 20).toFixed(1)} MiB (calls 1-50) -> ${(last / 2 ** 20).toFixed(1)} MiB (calls 151-200) (${(growth * 100).toFixed(2)}%)`)
  t.true(growth < 0.05, `RSS grew ${(growth * 100).toFixed(2)}%`)
})

test.serial('no leak: 50 load/dispose cycles keep RSS flat', async t => {
  const cycle = async (): Promise<void> => {
    const p = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
    await p.generate('a cat', { steps: 1, width: 64, height: 64, outputType: 'latent' })
    await p.dispose()
    global.gc?.()
  }
  // Warm-up: the allocator's footprint settles after a few dozen loads (measured: flat from ~60 on).
  for (let i = 0; i < 60; i++) await cycle()
  // The CPU backend's byte count is process-wide: it must come back exactly after every dispose.
  const probe = Runtime.open('cpu', () => {})
  const held = probe.engine.bytesInUse()
  // RSS after each cycle (after a GC); medians of the first and last ten resist a single late collection.
  const rss: number[] = []
  for (let i = 0; i < 50; i++) {
    await cycle()
    t.is(probe.engine.bytesInUse(), held, `cycle ${i} left native memory behind`)
    rss.push(process.memoryUsage.rss())
  }
  probe.dispose()
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  const first = median(rss.slice(0, 10))
  const last = median(rss.slice(-10))
  const growth = (last - first) / first
  t.log(`RSS median ${(first / 2 ** 20).toFixed(1)} MiB (cycles 1-10) -> ${(last / 2 ** 20).toFixed(1)} MiB (cycles 41-50) (${(growth * 100).toFixed(2)}%)`)
  t.true(growth < 0.1, `RSS grew ${(growth * 100).toFixed(2)}%`)
})

test.serial('16 concurrent calls on one pipeline and on two pipelines all finish, each equal to the call alone', async t => {
  const other = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  const opts = (i: number): any => ({ steps: 2, width: 64, height: 64, seed: 100 + i, outputType: 'latent', scheduler: i % 2 ? 'euler' : 'dpmpp-2m', count: 1 + (i % 2) })
  const alone: Array<Float32Array | undefined> = []
  for (let i = 0; i < 16; i++) alone.push((await pipe.generate(`prompt ${i}`, opts(i))).latents)
  const both = await Promise.all([
    ...Array.from({ length: 16 }, async (_, i) => await pipe.generate(`prompt ${i}`, opts(i))),
    ...Array.from({ length: 16 }, async (_, i) => await other.generate(`prompt ${i}`, opts(i)))
  ])
  both.forEach((r, k) => t.deepEqual(r.latents, alone[k % 16], `call ${k}`))
  await other.dispose()
})

test.serial('aborts at random points of loading and generating never crash or leave a pipeline unusable', async t => {
  let aborted = 0
  let finished = 0
  const rnd = fc.sample(fc.integer({ min: 0, max: 40 }), { numRuns: 300, seed: 3 })
  for (let i = 0; i < 300; i++) {
    const ac = new AbortController()
    const delay = i % 10 === 0 ? rnd[i] * 15 : rnd[i] * 4 // loading takes ~10x longer than a tiny run
    const timer = setTimeout(() => ac.abort(), delay)
    try {
      if (i % 10 === 0) {
        const p = await Pipeline.fromPretrained(TINY, { device: 'cpu', signal: ac.signal })
        await p.dispose()
      } else {
        await pipe.generate('a cat', { steps: 3, width: 64, height: 64, seed: i, signal: ac.signal, count: 1 + (i % 2) })
      }
      finished++
    } catch (err) {
      t.is((err as Error).name, 'AbortError', String(err))
      aborted++
    } finally {
      clearTimeout(timer)
    }
  }
  t.log(`${aborted} aborted, ${finished} finished`)
  t.true(aborted > 30 && finished > 30)
  const ok = await pipe.generate('a cat', { steps: 2, width: 64, height: 64, seed: 1 })
  t.is(ok.images.length, 1)
})

test('determinism: the same seed gives the same bytes with 1, 2 or 3 CPU threads', async t => {
  const { execFile } = await import('node:child_process')
  const { promisify } = await import('node:util')
  const script = `
    const { Pipeline } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'lib'))})
    ;(async () => {
      const p = await Pipeline.fromPretrained(${JSON.stringify(TINY)}, { device: 'cpu' })
      const r = await p.generate('a photo of a cat', { steps: 4, seed: 3, width: 128, height: 96, count: 2 })
      process.stdout.write(require('node:crypto').createHash('sha256').update(r.images[0].data).update(r.images[1].data).digest('hex'))
      await p.dispose()
    })()`
  const hashes = []
  for (const threads of ['1', '2', '3']) {
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { env: { ...process.env, PG25_THREADS: threads } })
    hashes.push(stdout)
  }
  t.is(hashes[0].length, 64)
  t.deepEqual(hashes, [hashes[0], hashes[0], hashes[0]])
})
