// Offload on the CPU backend (issue 28: the real model within 8 GB): a component's weights paged out to
// a scratch file and read back, bit for bit, by its next call; and the pipeline paging the idle
// components out where a request would not fit otherwise.
import test from 'ava'
import { Pipeline, Pg25Error, Runtime, TextEncoderModel, TorchGenerator, UNetModel, readModelIndex, resolveComponent } from '../../lib'
import { costModel, requestPhases } from '../../lib/memory'
import type { ComponentSource } from '../../lib/model/model-dir'
import { chooseModel } from '../../lib/cli/model'
import { LoRAs } from '../../lib/lora/lora'
import { GOLDEN, TINY, readGolden, relativeError } from '../support/helpers'
import path from 'node:path'

async function sources (): Promise<ComponentSource[]> {
  const index = await readModelIndex(TINY)
  const out: ComponentSource[] = []
  for (const n of ['text_encoder', 'text_encoder_2', 'unet', 'vae']) out.push(await resolveComponent(TINY, index, n, null, () => {}))
  return out
}

const bytesOf = (img: { data: Uint8Array }): Buffer => Buffer.from(img.data)

for (const precision of ['fp32', 'bf16'] as const) {
  test.serial(`a paged-out UNet (${precision}) frees its weights, and its next call reads them back: the same output, bit for bit`, async t => {
    const rt = Runtime.open('cpu', () => {})
    t.teardown(() => rt.dispose())
    rt.engine.setWeightPrecision(precision)
    const before = rt.engine.bytesInUse()
    const unet = await UNetModel.load(rt, (await sources())[2])
    const weights = rt.engine.bytesInUse() - before
    const g = new TorchGenerator(7)
    const sample = rt.fromHost(g.randn([2, 4, 16, 16]), [2, 4, 16, 16])
    const ctx = rt.fromHost(g.randn([2, 77, 64]), [2, 77, 64])
    const te = rt.fromHost(g.randn([2, 32]), [2, 32])
    const ids = Float32Array.from([128, 128, 0, 0, 128, 128, 128, 128, 0, 0, 128, 128])
    const run = async (): Promise<Float32Array> => {
      const y = await unet.predict(sample, 0.5, ctx, te, ids)
      const host = rt.toHost(y)
      y.dispose()
      return host
    }
    const first = await run() // packs the weights into the kernels' panels: what is paged out is the packed form
    const held = rt.engine.bytesInUse()
    t.true(await unet.pageOut())
    t.true(unet.paged)
    t.is(rt.engine.bytesInUse(), held - weights, 'every weight byte left memory')
    t.true(await unet.pageOut(), 'paging out again is a no-op')
    t.is(rt.engine.bytesInUse(), held - weights)
    t.deepEqual(await run(), first)
    t.false(unet.paged)
    t.is(rt.engine.bytesInUse(), held)
    // A second round trip reads the slot again (nothing changed, so nothing is written again).
    await unet.pageOut()
    t.deepEqual(await run(), first)
    // Calls and page-outs racing on one component: a page-out waits for the calls running, a call pages back in.
    for (let i = 0; i < 3; i++) {
      const outs = await Promise.all([run(), unet.pageOut(), run(), unet.pageOut(), run()])
      for (const k of [0, 2, 4]) t.deepEqual(outs[k], first)
    }
  })
}

test.serial("offload 'always' pages the text encoders and the UNet out in each run: the same images, the weights out of memory between runs", async t => {
  const images: Record<string, Buffer[]> = {}
  const between: Record<string, number> = {}
  for (const offload of ['never', 'always'] as const) {
    // (One pipeline at a time: memory() counts the process's CPU backends together.)
    const pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu', offload })
    try {
      const a = await pipe.generate('a cat', { seed: 3, steps: 4, width: 128, height: 128 })
      between[offload] = pipe.memory().host
      const b = await pipe.generate('a dog on a hill', { seed: 4, steps: 4, width: 128, height: 128, negativePrompt: 'blurry' })
      images[offload] = [bytesOf(a.images[0]), bytesOf(b.images[0])]
    } finally {
      await pipe.dispose()
    }
  }
  t.true(between.always < between.never * 0.1, `${between.always} of ${between.never} bytes held between runs`)
  t.true(images.never[0].equals(images.always[0]))
  t.true(images.never[1].equals(images.always[1]))
})

test.serial("offload 'auto' pages only a request that would not fit memoryLimit otherwise; 'never' refuses it", async t => {
  const probe = await Pipeline.fromPretrained(TINY, { device: 'cpu', precision: 'fp32', offload: 'always' })
  const loaded = probe.memory().host
  const reference = await probe.generate('a cat', { seed: 5, steps: 3, width: 512, height: 512 })
  const vaeOnly = probe.memory().host
  await probe.dispose()
  const pageable = loaded - vaeOnly
  const need = requestPhases(costModel(await sources(), 'cpu'), 512, 512, 1, true, 77)
  // A limit under what the run needs beside every weight, over what it needs with the idle ones paged out.
  const limit = loaded + Math.max(need.unet, need.vae) - pageable / 2
  t.true(need.vae <= limit - loaded + pageable && need.unet <= limit - loaded + pageable / 2, 'the limit leaves room once paged')

  const never = await Pipeline.fromPretrained(TINY, { device: 'cpu', precision: 'fp32', offload: 'never', memoryLimit: limit })
  const err = await t.throwsAsync(never.generate('a cat', { seed: 5, steps: 3, width: 512, height: 512 }))
  t.true(err instanceof Pg25Error && err.code === 'PG25_OUT_OF_MEMORY', String(err))
  await never.dispose()

  const auto = await Pipeline.fromPretrained(TINY, { device: 'cpu', precision: 'fp32', memoryLimit: limit })
  t.teardown(async () => await auto.dispose())
  const small = await auto.generate('a cat', { seed: 5, steps: 3, width: 64, height: 64 })
  t.true(auto.memory().host >= loaded, 'a request that fits pages nothing')
  t.is(small.images[0].width, 64)
  const paged = await auto.generate('a cat', { seed: 5, steps: 3, width: 512, height: 512 })
  t.true(bytesOf(paged.images[0]).equals(bytesOf(reference.images[0])))
  t.true(auto.memory().host < loaded * 0.1, 'the idle weights were paged out')
  // Far beyond even that room: refused, naming the paging it already counted.
  const huge = await t.throwsAsync(auto.generate('a cat', { seed: 5, steps: 3, width: 2048, height: 2048 }))
  t.regex(String(huge?.message), /even with the idle components' weights paged out/)
})

// Serial, as the others here: the backends' byte counter is the process's, and TMPDIR is too.
test.serial('a scratch folder that cannot be written is a clear PG25_OUT_OF_MEMORY naming it, and the model stays usable', async t => {
  // TMPDIR on POSIX; TMP, then TEMP, on Windows (GetTempPath).
  const names = ['TMPDIR', 'TMP', 'TEMP']
  const saved = names.map(n => process.env[n])
  const restore = (): void => names.forEach((n, i) => { if (saved[i] === undefined) delete process.env[n]; else process.env[n] = saved[i] })
  for (const n of names) process.env[n] = process.platform === 'win32' ? 'C:\\nonexistent\\pg25-scratch\\' : '/nonexistent/pg25-scratch'
  t.teardown(restore)
  const pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu', offload: 'always' })
  t.teardown(async () => await pipe.dispose())
  const err = await t.throwsAsync(pipe.generate('a cat', { seed: 1, steps: 2, width: 64, height: 64 }))
  t.true(err instanceof Pg25Error && err.code === 'PG25_OUT_OF_MEMORY', String(err))
  t.regex(String(err?.message), /nonexistent.pg25-scratch/)
  restore()
  const offloadNever = await Pipeline.fromPretrained(TINY, { device: 'cpu', offload: 'never' })
  const want = await offloadNever.generate('a cat', { seed: 1, steps: 2, width: 64, height: 64 })
  await offloadNever.dispose()
  const again = await pipe.generate('a cat', { seed: 1, steps: 2, width: 64, height: 64 })
  t.true(bytesOf(again.images[0]).equals(bytesOf(want.images[0])))
})

test('offload is checked by name', async t => {
  const err = await t.throwsAsync(Pipeline.fromPretrained(TINY, { device: 'cpu', offload: 'sometimes' as never }))
  t.true(err instanceof Pg25Error && err.code === 'PG25_INVALID_ARGUMENT', String(err))
  t.regex(String(err?.message), /offload/)
})

test('the CLI takes --offload auto, always or never', t => {
  t.is(chooseModel({}).offload, 'auto')
  t.is(chooseModel({ offload: 'always' }).offload, 'always')
  const e = t.throws(() => chooseModel({ offload: 'yes' }))
  t.true(e instanceof Pg25Error && e.code === 'PG25_INVALID_ARGUMENT')
  t.regex(String(e?.message), /--offload must be auto, always, never/)
})

test.serial('LoRA merges survive paging: a merged UNet paged out and back keeps the merge, and merging into a paged-out UNet reads it back first', async t => {
  const rt = Runtime.open('cpu', () => {})
  t.teardown(() => rt.dispose())
  const src = await sources()
  const te1 = await TextEncoderModel.load(rt, src[0])
  const te2 = await TextEncoderModel.load(rt, src[1])
  const unet = await UNetModel.load(rt, src[2])
  const g = readGolden(path.join(GOLDEN, 'lora', 'lora_stages.safetensors'))
  const u = readGolden('unet.safetensors')
  const predict = async (): Promise<Float32Array> => {
    const y = await unet.predict(rt.fromHost(u.sample.data, u.sample.shape), u.timestep.data[0],
      rt.fromHost(u.encoder_hidden_states.data, u.encoder_hidden_states.shape), rt.fromHost(u.text_embeds.data, u.text_embeds.shape),
      u.time_ids.data)
    const host = rt.toHost(y)
    y.dispose()
    return host
  }
  const loras = new LoRAs(rt, { text_encoder: te1.id, text_encoder_2: te2.id, unet: unet.id })
  await loras.add(await loras.read(path.join(GOLDEN, 'lora', 'lora_kohya.safetensors'), { name: 'k' }))
  await loras.apply({ k: 1 })
  const merged = await predict()
  t.true(relativeError(merged, g['scale1.0.unet_out'].data) <= 1e-4)
  await unet.pageOut()
  t.deepEqual(await predict(), merged)
  await unet.pageOut()
  await loras.apply({ k: 0.6 })
  const err = relativeError(await predict(), g['scale0.6.unet_out'].data)
  t.true(err <= 1e-4, `scale 0.6 after paging: ${err}`)
})
