import test from 'ava'
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { Pipeline, Pg25Error } from '../../lib'
import { createServer } from '../../lib/server'
import { writeSafetensors, type TensorToWrite } from '../../lib/io/safetensors-writer'
import { GOLDEN, TINY, maxAbsDiff, readGolden, relativeError } from '../support/helpers'

// The golden LoRA cases (diffusers 0.36 + peft on tiny-pg25): one LoRA in three files (kohya names
// with alpha tensors, PEFT names with alpha in the header metadata, PEFT with alpha folded into B).
const DIR = path.join(GOLDEN, 'lora')
const KOHYA = path.join(DIR, 'lora_kohya.safetensors')
const PEFT = path.join(DIR, 'lora_peft.safetensors')
const FOLDED = path.join(DIR, 'lora_peft_folded.safetensors')
const PROMPT = 'Astronaut in a jungle, cold color palette, muted colors, detailed, 8k'
const RUN = { steps: 8, guidanceScale: 3, width: 128, height: 128, seed: 42 }

let pipe: Pipeline
let tmp: string
test.before(async () => {
  pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  tmp = mkdtempSync(path.join(os.tmpdir(), 'pg25-lora-'))
})
test.after.always(async () => {
  await pipe?.dispose()
  if (tmp) rmSync(tmp, { recursive: true, force: true })
})

const golden = (file: string): { latents: Float32Array, image8: number[] } => {
  const g = readGolden(path.join(DIR, file))
  return { latents: g.latents.data, image8: Array.from(g.image.data, x => Math.round(Math.min(1, Math.max(0, x)) * 255)) }
}

/** Latents within 1e-3 relative of the golden file (and, with `image`, the 8-bit image within 1 level). */
async function matches (t: any, file: string, options: object = {}, image = false): Promise<Float32Array> {
  const g = golden(file)
  const r = await pipe.generate(PROMPT, { ...RUN, ...options, outputType: 'latent' })
  const err = relativeError(r.latents!, g.latents)
  t.true(err <= 1e-3, `${file} ${JSON.stringify(options)}: latents relative error ${err}`)
  if (image) {
    const img = await pipe.generate(PROMPT, { ...RUN, ...options })
    const d = maxAbsDiff(img.images[0].data, g.image8)
    t.true(d <= 1, `${file}: image differs by ${d} levels`)
  }
  return r.latents!
}

test.serial('kohya LoRA: scale 1.0, scale 0.6 (setLoRAScale and a per-call override), unload back to the base', async t => {
  const base = await matches(t, 'base_p1.safetensors')
  const info = await pipe.loadLoRA(KOHYA, { name: 'k' })
  t.deepEqual(info, { name: 'k', scale: 1, source: KOHYA, modules: 232 })
  await matches(t, 'lora_p1_scale1.0.safetensors', {}, true)
  await matches(t, 'lora_p1_scale0.6.safetensors', { loras: { k: 0.6 } })
  await matches(t, 'lora_p1_scale1.0.safetensors') // the override held for that call only
  await pipe.setLoRAScale('k', 0.6)
  t.deepEqual(pipe.loras.map(l => [l.name, l.scale]), [['k', 0.6]])
  await matches(t, 'lora_p1_scale0.6.safetensors', {}, true)
  await pipe.unloadLoRA('k')
  t.deepEqual(pipe.loras, [])
  const after = await matches(t, 'unload_p1.safetensors', {}, true)
  t.deepEqual(after, base) // the originals are read again from the files: bit for bit the base
})

for (const [label, file] of [['PEFT with alpha in the metadata', PEFT], ['PEFT with alpha folded into lora_B', FOLDED]]) {
  test.serial(`${label}: scales 1.0 and 0.6 match diffusers`, async t => {
    await pipe.loadLoRA(file, { name: 'p', scale: 0.6 })
    await matches(t, 'lora_p1_scale0.6.safetensors')
    await matches(t, 'lora_p1_scale1.0.safetensors', { loras: { p: 1 } })
    await pipe.unloadLoRA('p')
  })
}

test.serial('two LoRAs stack as the sum of their deltas: 0.6 + 0.4 of one LoRA is the LoRA at 1.0; +1 and -1 cancel', async t => {
  await pipe.loadLoRA(KOHYA, { name: 'a', scale: 0.6 })
  await pipe.loadLoRA(PEFT, { name: 'b', scale: 0.4 })
  t.deepEqual(pipe.loras.map(l => [l.name, l.scale]), [['a', 0.6], ['b', 0.4]])
  await matches(t, 'lora_p1_scale1.0.safetensors')
  await matches(t, 'base_p1.safetensors', { loras: { a: 1, b: -1 } })
  await matches(t, 'lora_p1_scale0.6.safetensors', { loras: { b: 0 } })
  await pipe.unloadLoRA('a')
  await pipe.unloadLoRA('b')
})

test.serial('loading applies between calls: a call queued before loadLoRA runs without it, one queued after with it', async t => {
  const before = pipe.generate(PROMPT, { ...RUN, outputType: 'latent' })
  const load = pipe.loadLoRA(KOHYA, { name: 'q' })
  const after = pipe.generate(PROMPT, { ...RUN, outputType: 'latent' })
  const unload = pipe.unloadLoRA('q')
  const last = pipe.generate(PROMPT, { ...RUN, outputType: 'latent' })
  const [b, , a, , l] = await Promise.all([before, load, after, unload, last])
  t.true(relativeError(b.latents!, golden('base_p1.safetensors').latents) <= 1e-3)
  t.true(relativeError(a.latents!, golden('lora_p1_scale1.0.safetensors').latents) <= 1e-3)
  t.deepEqual(l.latents, b.latents)
})

test.serial('refusals change nothing: unknown keys, disagreeing shapes, another architecture, LoRA variants, bad names and scales', async t => {
  await pipe.loadLoRA(KOHYA, { name: 'k' })
  const write = async (name: string, tensors: TensorToWrite[]): Promise<string> => {
    const file = path.join(tmp, name)
    await writeSafetensors(file, tensors)
    return file
  }
  const pair = (prefix: string, down: number[], up: number[], suffix = ['lora_down.weight', 'lora_up.weight']): TensorToWrite[] => [
    { name: `${prefix}.${suffix[0]}`, dtype: 'F32', shape: down, data: new Float32Array(down.reduce((a, b) => a * b, 1)).fill(0.01) },
    { name: `${prefix}.${suffix[1]}`, dtype: 'F32', shape: up, data: new Float32Array(up.reduce((a, b) => a * b, 1)).fill(0.01) }
  ]
  const refuse = async (file: string, code: string, ...parts: string[]): Promise<void> => {
    const err = await t.throwsAsync(pipe.loadLoRA(file, { name: 'x' }), { instanceOf: Pg25Error })
    t.is(err?.code as string, code, err?.message)
    for (const p of parts) t.true(err!.message.includes(p), `${err?.message} should name ${p}`)
  }
  // One good module and one the model does not have.
  await refuse(await write('unknown.safetensors', [
    ...pair('lora_unet_middle_block_1_proj_in', [4, 64], [64, 4]),
    ...pair('lora_unet_middle_block_1_transformer_blocks_0_attn3_to_q', [4, 64], [64, 4])
  ]), 'PG25_BAD_WEIGHTS', 'lora_unet_middle_block_1_transformer_blocks_0_attn3_to_q.lora_down.weight', '1 of its 2 modules')
  await refuse(await write('shape.safetensors', pair('unet.mid_block.attentions.0.proj_in', [4, 320], [320, 4], ['lora_A.weight', 'lora_B.weight'])),
    'PG25_BAD_WEIGHTS', 'unet.mid_block.attentions.0.proj_in.lora_A.weight', 'unet module "mid_block.attentions.0.proj_in"', '[64, 64]')
  // An SD 1.5 LoRA: down_blocks.0 has attentions there, not in this UNet.
  await refuse(await write('sd15.safetensors', pair('lora_unet_down_blocks_0_attentions_0_proj_in', [4, 320], [320, 4])),
    'PG25_BAD_WEIGHTS', 'lora_unet_down_blocks_0_attentions_0_proj_in', 'another architecture')
  await refuse(await write('loha.safetensors', pair('lora_unet_middle_block_1_proj_in', [64, 4], [4, 64], ['hada_w1_a', 'hada_w1_b'])), 'PG25_UNSUPPORTED', 'LoHa')
  await refuse(await write('noup.safetensors', pair('lora_unet_middle_block_1_proj_in', [4, 64], [64, 4]).slice(0, 1)), 'PG25_BAD_WEIGHTS', 'no up tensor')
  await refuse(path.join(tmp, 'missing.safetensors'), 'PG25_NOT_FOUND')
  await t.throwsAsync(pipe.loadLoRA(KOHYA, { name: 'k' }), { code: 'PG25_INVALID_ARGUMENT', message: /already loaded/ } as any)
  await t.throwsAsync(pipe.loadLoRA(KOHYA, { name: 'y', scale: Number.NaN }), { code: 'PG25_INVALID_ARGUMENT', message: /scale/ } as any)
  await t.throwsAsync(pipe.setLoRAScale('nope', 1), { code: 'PG25_INVALID_ARGUMENT', message: /no LoRA named "nope".*loaded: "k"/ } as any)
  await t.throwsAsync(pipe.unloadLoRA('nope'), { code: 'PG25_INVALID_ARGUMENT' } as any)
  await t.throwsAsync(pipe.generate(PROMPT, { ...RUN, loras: { nope: 1 } }), { code: 'PG25_INVALID_ARGUMENT', message: /nope/ } as any)
  await t.throwsAsync(pipe.generate(PROMPT, { ...RUN, loras: { k: 1e9 } }), { code: 'PG25_INVALID_ARGUMENT', message: /loras\["k"\]/ } as any)
  t.deepEqual(pipe.loras.map(l => [l.name, l.scale]), [['k', 1]])
  await matches(t, 'lora_p1_scale1.0.safetensors')
  await pipe.unloadLoRA('k')
})

test.serial('the server takes LoRA scales by name for LoRAs the operator loaded; unknown names and paths are refused', async t => {
  await pipe.loadLoRA(KOHYA, { name: 'k' })
  const server = createServer(pipe)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as any).port}/generate`
  const post = async (body: object): Promise<Response> => await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: PROMPT, ...RUN, ...body }) })
  try {
    const r = await post({ loras: { k: 0.6 }, response: 'json' })
    t.is(r.status, 200)
    const { data } = await sharp(Buffer.from((await r.json() as { images: string[] }).images[0], 'base64')).raw().toBuffer({ resolveWithObject: true })
    const d = maxAbsDiff(data, golden('lora_p1_scale0.6.safetensors').image8)
    t.true(d <= 1, `image differs by ${d} levels`)
    for (const loras of [{ nope: 1 }, { [KOHYA]: 1 }, { k: '1' }]) {
      const bad = await post({ loras })
      t.is(bad.status, 400, JSON.stringify(loras))
    }
  } finally {
    await server.shutdown(1000)
    await pipe.unloadLoRA('k')
  }
})

test.serial('pg25 --lora FILE:SCALE, repeated, stacks LoRAs on the command line', async t => {
  const out = path.join(tmp, 'cli.png')
  const cli = path.join(__dirname, '..', '..', 'lib', 'cli', 'index.js')
  const { stdout } = await promisify(execFile)(process.execPath, [cli, PROMPT, '--model', TINY, '--device', 'cpu', '--steps', '8', '--guidance', '3', '--seed', '42',
    '--lora', `${KOHYA}:0.3`, '--lora', `${PEFT}:0.3`, '-o', out, '--json', '-q'])
  t.deepEqual(JSON.parse(stdout).loras, { lora_kohya: 0.3, lora_peft: 0.3 })
  const { data } = await sharp(readFileSync(out)).raw().toBuffer({ resolveWithObject: true })
  const d = maxAbsDiff(data, golden('lora_p1_scale0.6.safetensors').image8)
  t.true(d <= 1, `image differs by ${d} levels`)
})
