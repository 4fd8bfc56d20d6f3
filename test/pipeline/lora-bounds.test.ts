import test from 'ava'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Pg25Error } from '../../lib/errors'
import { writeSafetensors, type TensorToWrite } from '../../lib/io/safetensors-writer'
import { readLoRA, type WeightShapes } from '../../lib/lora/file'
import { Pipeline } from '../../lib/pipeline'
import { TINY } from '../support/helpers'

// LoRA files that are small on disk but ask for unbounded work, memory or range: alpha_pattern keys
// are read as module names (never compiled as regular expressions), tensor sizes are checked against
// the memory there is before a byte is read, and a delta that float32 cannot hold is refused at load.
// readLoRA runs against made-up weight shapes: no model is needed.
const SHAPES: WeightShapes = {
  unet: { 'mid_block.attentions.0.proj_in.weight': [32, 32], 'mid_block.attentions.0.transformer_blocks.0.attn1.to_k.weight': [32, 32] },
  text_encoder: {},
  text_encoder_2: {}
}
const PROJ = 'unet.mid_block.attentions.0.proj_in'
const TO_K = 'unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_k'
let dir: string
test.before(async () => { dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-lora-bounds-')) })
test.after.always(async () => { await fs.rm(dir, { recursive: true, force: true }) })

let n = 0
const pair = (module: string, rank: number, value = 0.01): TensorToWrite[] => [
  { name: `${module}.lora_A.weight`, dtype: 'F32', shape: [rank, 32], data: new Float32Array(rank * 32).fill(value) },
  { name: `${module}.lora_B.weight`, dtype: 'F32', shape: [32, rank], data: new Float32Array(32 * rank).fill(value) }
]
async function write (tensors: TensorToWrite[], adapter?: Record<string, unknown>): Promise<string> {
  const file = path.join(dir, `l${n++}.safetensors`)
  const meta = adapter === undefined ? undefined : { format: 'pt', lora_adapter_metadata: JSON.stringify(adapter) }
  await writeSafetensors(file, tensors, meta)
  return file
}

test('alpha_pattern keys name modules or their dotted suffixes; the first matching key in the file wins', async t => {
  const patterns = { 'attn1.to_k': 2, to_k: 99, '^mid_block.attentions.0.proj_in': 12 }
  const file = await write([...pair(PROJ, 4), ...pair(TO_K, 4)], { 'unet.lora_alpha': 8, 'unet.alpha_pattern': patterns })
  const mods = await readLoRA(file, SHAPES)
  const scale = Object.fromEntries(mods.map(m => [m.weight, m.scale]))
  t.deepEqual(scale, { [`${PROJ.slice(5)}.weight`]: 12 / 4, [`${TO_K.slice(5)}.weight`]: 2 / 4 })
  // ^ anchors the whole name: a suffix does not match it.
  const anchored = await write(pair(TO_K, 4), { 'unet.lora_alpha': 8, 'unet.alpha_pattern': { '^to_k': 99 } })
  t.is((await readLoRA(anchored, SHAPES))[0].scale, 8 / 4)
})

test('an alpha_pattern key that is a regular expression is refused by name, at once (a catastrophic one included)', async t => {
  for (const key of ['(((.+)+)+)+Z', 'attn1\\.to_.*', 'to_[kq]']) {
    const file = await write(pair(TO_K, 4), { 'unet.lora_alpha': 8, 'unet.alpha_pattern': { [key]: 1 } })
    const err = await t.throwsAsync(readLoRA(file, SHAPES), { instanceOf: Pg25Error })
    t.is(err!.code, 'PG25_UNSUPPORTED')
    for (const part of [file, JSON.stringify(key), 'unet.alpha_pattern']) t.true(err!.message.includes(part), err!.message)
  }
  const nan = await write(pair(TO_K, 4), { 'unet.alpha_pattern': { to_k: 'big' } })
  await t.throwsAsync(readLoRA(nan, SHAPES), { code: 'PG25_BAD_WEIGHTS', message: /alpha_pattern\["to_k"\] must be a finite number/ })
})

test('tensors larger than the memory there is are refused from the header, before any is read', async t => {
  // Rank 8192 on a 32 x 32 weight: 2 MiB of float32 for the pair, from a header that could sit on a sparse file.
  const file = await write(pair(PROJ, 8192, 0))
  const room = { bytes: 2 ** 20, text: 'only 1.0 MiB is free (test)' }
  const err = await t.throwsAsync(readLoRA(file, SHAPES, room), { instanceOf: Pg25Error })
  t.is(err!.code, 'PG25_OUT_OF_MEMORY')
  t.regex(err!.message, /l\d+\.safetensors: the LoRA's tensors need about 4\.0 MiB of host memory as float32, but only 1\.0 MiB is free/)
  // The same file fits in more room.
  t.is((await readLoRA(file, SHAPES, { bytes: 2 ** 24, text: '' }))[0].rank, 8192)
})

test('loadLoRA refuses a LoRA that memoryLimit leaves no room for beside the model, from a sparse file, before reading it', async t => {
  // The model takes about 26 MiB.
  const pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu', memoryLimit: 48 * 2 ** 20, onWarning: () => {} })
  t.teardown(async () => { await pipe.dispose() })
  // Rank 65536 on a 64 x 64 weight: 32 MiB of tensors that the file holds only as a header and a hole.
  const rank = 65536
  const header = Buffer.from(JSON.stringify({
    'unet.mid_block.attentions.0.proj_in.lora_A.weight': { dtype: 'F32', shape: [rank, 64], data_offsets: [0, rank * 256] },
    'unet.mid_block.attentions.0.proj_in.lora_B.weight': { dtype: 'F32', shape: [64, rank], data_offsets: [rank * 256, rank * 512] }
  }))
  const file = path.join(dir, 'sparse.safetensors')
  const head = Buffer.alloc(8)
  head.writeBigUInt64LE(BigInt(header.length))
  await fs.writeFile(file, Buffer.concat([head, header]))
  await fs.truncate(file, 8 + header.length + rank * 512)
  const err = await t.throwsAsync(pipe.loadLoRA(file, { name: 'sparse' }), { instanceOf: Pg25Error, code: 'PG25_OUT_OF_MEMORY' })
  t.regex(err!.message, /sparse\.safetensors: the LoRA's tensors need about 64\.0 MiB of host memory as float32, /)
  t.regex(err!.message, /but memoryLimit leaves 2\d\.\d MiB beside the model$/)
  t.deepEqual(pipe.loras, [])
})

test('a delta float32 cannot hold is refused at load, naming the weight: a huge lora_alpha, or huge tensors', async t => {
  const alpha = await write(pair(TO_K, 4), { 'unet.lora_alpha': 1e300 })
  const message = /to_k\.weight": alpha 1e\+300 x .*can exceed float32's range.*the merged weight would not be finite/
  await t.throwsAsync(readLoRA(alpha, SHAPES), { code: 'PG25_BAD_WEIGHTS', message })
  const huge = await write(pair(PROJ, 4, 3e38))
  await t.throwsAsync(readLoRA(huge, SHAPES), { code: 'PG25_BAD_WEIGHTS', message: /proj_in\.weight": alpha 4 x .*can exceed float32/ })
  // Large but representable at every allowed scale: loads.
  const big = await write(pair(PROJ, 4, 1e17))
  t.is((await readLoRA(big, SHAPES))[0].scale, 1)
})
