import test from 'ava'
import { AbortError, Pipeline, Runtime, TextEncoderModel, UNetModel, VAEModel, readModelIndex, resolveComponent } from '../../lib'
import { TINY } from '../support/helpers'

// An AbortSignal reaches native work already running: each network checks it between blocks, so a
// call aborted right after it starts rejects instead of finishing its pass.
let rt: Runtime
let te: TextEncoderModel
let unet: UNetModel
let vae: VAEModel
test.before(async () => {
  rt = Runtime.open('cpu', () => {})
  const index = await readModelIndex(TINY)
  const src = async (n: string): Promise<any> => await resolveComponent(TINY, index, n, null, () => {})
  te = await TextEncoderModel.load(rt, await src('text_encoder_2'))
  unet = await UNetModel.load(rt, await src('unet'))
  vae = await VAEModel.load(rt, await src('vae'))
})
test.after.always(() => { rt?.dispose() })

const zeros = (shape: number[]): any => rt.fromHost(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape)

/**
 * Runs `call` with a signal that aborted as it started, and returns the outcome. The native job still
 * runs, with its cancel flag already set, and must stop at its first check with ABORT_ERR. (Aborting a
 * moment after queueing raced the job on a busy machine: a tiny text encoder can finish first.)
 */
async function abortedAtStart<T> (call: (signal: AbortSignal) => Promise<T>): Promise<unknown> {
  const ac = new AbortController()
  ac.abort()
  return await call(ac.signal).then(() => 'finished', (err: unknown) => err)
}

test.serial('a UNet call, VAE decode and text encoder stop inside native work when aborted', async t => {
  const ctx = zeros([2, 77, unet.info.crossAttentionDim])
  const emb = zeros([2, unet.info.textEmbedsDim])
  const timeIds = new Float32Array(12).fill(64)
  const sample = zeros([2, 4, 32, 32])
  const lat = zeros([1, 4, 32, 32])
  const ids = [Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : 49407))]
  // Unaborted, each call finishes with its tensor.
  t.deepEqual((await unet.predict(sample, 0.5, ctx, emb, timeIds, new AbortController().signal)).shape, [2, 4, 32, 32])
  t.deepEqual((await vae.decode(lat, true, new AbortController().signal)).shape, [1, 3, 256, 256])
  t.deepEqual((await te.encode(ids, new AbortController().signal)).penultimate.shape, [1, 77, 32])
  const calls: Array<[string, (s: AbortSignal) => Promise<unknown>]> = [
    ['unet', async (s: AbortSignal) => await unet.predict(sample, 0.5, ctx, emb, timeIds, s)],
    ['vae', async (s: AbortSignal) => await vae.decode(lat, true, s)],
    ['text encoder', async (s: AbortSignal) => await te.encode(ids, s)]
  ]
  for (const [name, call] of calls) {
    const outcome = await abortedAtStart(call)
    t.true(outcome instanceof AbortError, `${name}: ${String(outcome)}`)
    t.is((outcome as AbortError).code, 'ABORT_ERR')
  }
})

test.serial('generate() aborted during its only step never completes that step', async t => {
  const pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  const ac = new AbortController()
  let steps = 0
  // One step at 1024x1024 is a single UNet call of seconds here; the abort lands inside it (the text
  // encoders take milliseconds), and the call stops at its next block instead of finishing the step.
  const run = pipe.generate('a cat', { steps: 1, width: 1024, height: 1024, seed: 1, signal: ac.signal, onStep: () => { steps++ } })
  setTimeout(() => ac.abort(), 200)
  const err = await t.throwsAsync(run)
  t.true(err instanceof AbortError)
  t.is(steps, 0)
  // The pipeline stays usable and its tensors were released.
  const before = pipe.memory().host
  await pipe.generate('a cat', { steps: 1, width: 64, height: 64, seed: 1 })
  t.is(pipe.memory().host, before)
  await pipe.dispose()
})
