// The CPU backend's half-width weight storage (precision 'bf16' / 'fp16') against diffusers' float32
// golden outputs, at the tolerances of issue 28 (bf16: 3e-2 per stage, 30 dB for the pipeline; fp16
// storage: 2e-2 and 35 dB, the fp16 GPU tolerances), and 'auto' choosing it under memoryLimit.
import test from 'ava'
import { Pipeline, Pg25Error, Runtime, UNetModel, VAEModel, TextEncoderModel, CLIPTokenizer, readModelIndex, resolveComponent } from '../../lib'
import type { ComponentSource } from '../../lib/model/model-dir'
import { modelBytes } from '../../lib/memory'
import { chooseModel } from '../../lib/cli/model'
import { loadNative } from '../../lib/native'
import { TINY, goldenCases, goldenUnet, readGolden, relativeError } from '../support/helpers'
import path from 'node:path'

const TOL = { bf16: { stage: 3e-2, db: 30 }, fp16: { stage: 2e-2, db: 35 } } as const

async function sources (): Promise<ComponentSource[]> {
  const index = await readModelIndex(TINY)
  const out: ComponentSource[] = []
  for (const n of ['text_encoder', 'text_encoder_2', 'unet', 'vae']) out.push(await resolveComponent(TINY, index, n, null, () => {}))
  return out
}

// (test/emulation.ts has one too, but importing it switches the process to the CUDA emulation build)
function psnr (a: ArrayLike<number>, b: ArrayLike<number>): number {
  let se = 0
  for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2
  return se === 0 ? Infinity : 10 * Math.log10(255 * 255 * a.length / se)
}
const to8 = (x: ArrayLike<number>): number[] => Array.from(x, v => Math.round(Math.min(1, Math.max(0, v)) * 255))

async function loaded (precision: 'fp32' | 'bf16' | 'fp16'): Promise<{ rt: Runtime, bytes: number, te: TextEncoderModel, unet: UNetModel, vae: VAEModel }> {
  const rt = Runtime.open('cpu', () => {})
  rt.engine.setWeightPrecision(precision)
  const [te1, , unet, vae] = await sources()
  const before = rt.engine.bytesInUse() // the CPU backend counts for the whole process: so serial tests, and differences
  const m = { te: await TextEncoderModel.load(rt, te1), unet: await UNetModel.load(rt, unet), vae: await VAEModel.load(rt, vae) }
  return { rt, bytes: rt.engine.bytesInUse() - before, ...m }
}

for (const p of ['bf16', 'fp16'] as const) {
  test.serial(`${p}: text encoder, UNet and VAE stages within ${TOL[p].stage} of diffusers, weights in about half the bytes`, async t => {
    const wide = await loaded('fp32')
    wide.rt.dispose()
    const { rt, bytes, te, unet, vae } = await loaded(p)
    t.true(bytes < 0.6 * wide.bytes, `${bytes} bytes held against fp32's ${wide.bytes}`)
    const tok = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'))
    const g = readGolden('text_encoders.safetensors')
    const prompt = (goldenCases().text_encoders.prompts as string[])[0]
    const enc = await te.encode([tok.encode(prompt)])
    const teErr = relativeError(rt.toHost(enc.penultimate), g['p0.te1_penultimate'].data)
    t.true(teErr <= TOL[p].stage, `text encoder: ${teErr}`)
    const { err } = await goldenUnet(rt, unet)
    t.true(err <= TOL[p].stage, `unet: ${err}`)
    const v = readGolden('vae.safetensors')
    const img = await vae.decode(rt.fromHost(v.latent.data, v.latent.shape), false)
    const vaeErr = relativeError(rt.toHost(img), v.image.data)
    t.true(vaeErr <= TOL[p].stage, `vae: ${vaeErr}`)
    t.log(`${p} (${loadNative().runtimeInfo().cpuIsa}): text encoder ${teErr.toExponential(2)}, unet ${err.toExponential(2)}, vae ${vaeErr.toExponential(2)}`)
    rt.dispose()
  })

  test.serial(`${p}: the golden pipelines at ${TOL[p].db} dB PSNR or more against diffusers`, async t => {
    const pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu', precision: p })
    for (const c of goldenCases().pipeline as any[]) {
      const g = readGolden(c.file)
      const r = await pipe.generate(c.prompt, { negativePrompt: c.negative ?? undefined, steps: c.steps, guidanceScale: c.guidance,
        width: c.w, height: c.h, seed: c.seed, promptStyle: 'plain' })
      const db = psnr(r.images[0].data, to8(g.image.data))
      t.true(db >= TOL[p].db, `${c.file}: ${db} dB`)
      t.log(`${p} ${c.file}: ${db.toFixed(1)} dB`)
    }
    await pipe.dispose()
  })
}

test.serial("'auto' keeps float32 when the model fits, and stores half width with one notice when memoryLimit is too small", async t => {
  const src = await sources()
  const wide = modelBytes(src, 'cpu', 4).needed
  const narrow = modelBytes(src, 'cpu', 2).needed
  const opts = { steps: 2, width: 64, height: 64, seed: 3, outputType: 'latent' as const }
  const notices: string[] = []
  const probe = Runtime.open('cpu', () => {})
  const host = (): number => probe.engine.bytesInUse() // the CPU backend's count, for the whole process
  let h0 = host()
  const exact = await Pipeline.fromPretrained(TINY, { device: 'cpu', precision: 'fp32' })
  const exactBytes = host() - h0
  const auto = await Pipeline.fromPretrained(TINY, { device: 'cpu', onWarning: m => notices.push(m) })
  t.deepEqual(notices, [])
  const want = (await exact.generate('a cat', opts)).latents!
  t.deepEqual((await auto.generate('a cat', opts)).latents, want, 'auto is fp32, bit for bit')
  // memoryLimit's room per request is counted against the process's CPU bytes: only the limited pipeline stays.
  await exact.dispose()
  await auto.dispose()
  h0 = host()
  const limited = await Pipeline.fromPretrained(TINY, { device: 'cpu', memoryLimit: (wide + narrow) / 2, onWarning: m => notices.push(m) })
  const limitedBytes = host() - h0
  t.is(notices.length, 1)
  // bf16 where its products run on AVX512-BF16, else fp16.
  const half = loadNative().runtimeInfo().cpuIsa === 'avx512bf16' ? 'bf16' : 'fp16'
  t.regex(notices[0], new RegExp(`precision 'auto': the model needs about .* in float32 but memoryLimit allows .*, so its weights are stored as ${half} `))
  t.true(limitedBytes < 0.6 * exactBytes, `${limitedBytes} bytes loaded against fp32's ${exactBytes}`)
  const err = relativeError((await limited.generate('a cat', opts)).latents!, want)
  t.true(err <= TOL.bf16.stage, `half-width latents against fp32: ${err}`)
  await limited.dispose()
  probe.dispose()
})

test.serial('precision is checked by name', async t => {
  const e = await t.throwsAsync(Pipeline.fromPretrained(TINY, { device: 'cpu', precision: 'int8' as any }))
  t.true(e instanceof Pg25Error)
  t.is((e as Pg25Error).code, 'PG25_INVALID_ARGUMENT')
  t.regex(e!.message, /precision must be 'auto' or 'fp32' or 'bf16' or 'fp16', got "int8"/)
})

test.serial('--precision (pg25 generate, serve and worker share the model flags) is checked and passed to loading', t => {
  t.is(chooseModel({ precision: 'bf16' }).precision, 'bf16')
  t.is(chooseModel({}).precision, 'auto')
  const e = t.throws(() => chooseModel({ precision: 'half' }))
  t.is((e as Pg25Error).code, 'PG25_INVALID_ARGUMENT')
  t.regex(e!.message, /--precision must be auto, fp32, bf16, fp16, got "half"/)
})
