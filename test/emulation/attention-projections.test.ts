// How the UNet's attention projections run. Cross-attention's keys and values depend only on the text
// conditioning, the same tensor at every step of a run: they are projected on its first step and kept
// with that tensor (freed with it, made again after a LoRA changes weights). On both backends: the
// second call projects nothing (the profile's linear count), gives the first call's output bit for
// bit, holds exactly the keys' and values' bytes until the conditioning is freed; and with CUDA graphs
// replayed, alternating conditionings each get their own keys and values. Self-attention's query, key
// and value projections share their input: one `linears` call per block, one batched GEMM on the GPU.
import test from 'ava'
import fs from 'node:fs'
import path from 'node:path'
import { Runtime, TextEncoderModel, UNetModel, readModelIndex, resolveComponent } from '../../lib'
import { LoRAs } from '../../lib/lora/lora'
import type { NativeTensor } from '../../lib/native'
import { GOLDEN, TINY, readGolden, relativeError } from '../support/helpers'
import { emulationReport, halfData } from '../support/emulation'

const component = async (name: string): Promise<any> => await resolveComponent(TINY, await readModelIndex(TINY), name, null, () => {})

// Transformer blocks and their channels, from the UNet's config: CrossAttnDown blocks take
// layers_per_block transformers, their mirrored up blocks one more, the mid block one.
function transformerChannels (): number[] {
  const c = JSON.parse(fs.readFileSync(path.join(TINY, 'unet', 'config.json'), 'utf8'))
  const n = c.block_out_channels.length
  const per = (v: number | number[], i: number): number => Array.isArray(v) ? v[i] : v
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    if (c.down_block_types[i] !== 'CrossAttnDownBlock2D') continue
    const blocks = (2 * per(c.layers_per_block, i) + 1) * per(c.transformer_layers_per_block, i)
    for (let b = 0; b < blocks; b++) out.push(c.block_out_channels[i])
  }
  for (let b = 0; b < per(c.transformer_layers_per_block, n - 1); b++) out.push(c.block_out_channels[n - 1])
  return out
}

interface Inputs {
  sample: NativeTensor, ctx: NativeTensor, te: NativeTensor, t: number, ids: Float32Array, ctxData: Float32Array, ctxShape: number[]
}

function goldenInputs (rt: Runtime): Inputs {
  const g = readGolden('unet.safetensors')
  return {
    sample: rt.fromHost(g.sample.data, g.sample.shape),
    ctx: rt.fromHost(g.encoder_hidden_states.data, g.encoder_hidden_states.shape),
    te: rt.fromHost(g.text_embeds.data, g.text_embeds.shape),
    t: g.timestep.data[0],
    ids: g.time_ids.data,
    ctxData: g.encoder_hidden_states.data,
    ctxShape: g.encoder_hidden_states.shape
  }
}

async function predict (rt: Runtime, unet: UNetModel, x: Inputs, ctx = x.ctx): Promise<Float32Array> {
  const y = await unet.predict(x.sample, x.t, ctx, x.te, x.ids)
  const out = rt.toHost(y)
  y.dispose()
  return out
}

for (const device of ['cpu', 'cuda'] as const) {
  test.serial(`${device}: the conditioning's keys and values are projected once, kept with it and freed with it; self-attention projects in one call`, async t => {
    process.env.PG25_PROFILE = '1' // counts each op's calls (and records no graphs)
    const rt = Runtime.open(device, () => {})
    delete process.env.PG25_PROFILE
    const unet = await UNetModel.load(rt, await component('unet'))
    const x = goldenInputs(rt)
    const blocks = transformerChannels()
    const [B, L] = x.ctxShape
    const kvBytes = blocks.reduce((s, c) => s + 2 * B * L * c, 0) * (device === 'cpu' ? 4 : 2)
    rt.engine.profile()
    const before = rt.engine.bytesInUse()
    const first = await predict(rt, unet, x)
    const linearFirst = rt.engine.profile().linear.calls
    t.is(rt.engine.bytesInUse() - before, kvBytes, 'the keys and values stay with the conditioning')
    if (device === 'cuda') emulationReport(true)
    const second = await predict(rt, unet, x)
    const p = rt.engine.profile()
    t.is(linearFirst - p.linear.calls, 2 * blocks.length, 'the second call projects no keys or values')
    t.is(p.linears.calls, blocks.length, 'one call for each self-attention\'s three projections')
    if (device === 'cuda') t.is(emulationReport().matmuls, p.linear.calls + p.linears.calls, 'each a single (batched) GEMM')
    t.deepEqual(second, first)
    const g = readGolden('unet.safetensors')
    const err = relativeError(second, g.out.data)
    t.true(err <= (device === 'cpu' ? 1e-4 : 2e-2), `against diffusers: ${err}`)
    x.ctx.dispose()
    t.is(rt.engine.bytesInUse(), before - x.ctxShape.reduce((a, b) => a * b) * (device === 'cpu' ? 4 : 2), 'freed with the conditioning')
    for (const v of [x.sample, x.te]) v.dispose()
    rt.dispose()
    if (device === 'cuda') t.deepEqual(emulationReport().misuse, [])
  })

  test.serial(`${device}: a LoRA on the cross-attention's keys and values is seen by a conditioning projected before it`, async t => {
    const rt = Runtime.open(device, () => {})
    const unet = await UNetModel.load(rt, await component('unet'))
    const x = goldenInputs(rt)
    const base = await predict(rt, unet, x)
    const te1 = await TextEncoderModel.load(rt, await component('text_encoder'))
    const te2 = await TextEncoderModel.load(rt, await component('text_encoder_2'))
    const loras = new LoRAs(rt, { text_encoder: te1.id, text_encoder_2: te2.id, unet: unet.id })
    // This LoRA changes every attn2.to_k and attn2.to_v (among others).
    await loras.add(await loras.read(path.join(GOLDEN, 'lora', 'lora_kohya.safetensors'), { name: 'k' }))
    await loras.apply({ k: 1 })
    const kept = await predict(rt, unet, x)
    const fresh = rt.fromHost(x.ctxData, x.ctxShape)
    t.deepEqual(kept, await predict(rt, unet, x, fresh), 'the same conditioning and a new copy of it give one output')
    t.notDeepEqual(kept, base)
    await loras.remove('k')
    t.deepEqual(await predict(rt, unet, x), base, 'unloaded: the base model\'s output again')
    for (const v of [x.sample, x.ctx, x.te, fresh]) v.dispose()
    rt.dispose()
  })
}

test.serial('cuda: with graphs replayed, alternating conditionings each get their own keys and values', async t => {
  const runs: Float32Array[][] = []
  const copied: number[] = [] // device-to-device bytes each replayed call queued
  for (const graphs of ['0', '1']) {
    process.env.PG25_CUDA_GRAPHS = graphs
    const rt = Runtime.open('cuda', () => {})
    const unet = await UNetModel.load(rt, await component('unet'))
    const x = goldenInputs(rt)
    const other = rt.fromHost(halfData(7)(x.ctxShape), x.ctxShape)
    const outs = []
    for (const ctx of [x.ctx, other, x.ctx, x.ctx, other]) {
      emulationReport(true)
      outs.push(await predict(rt, unet, x, ctx))
      if (graphs === '1') copied.push(emulationReport().deviceToDeviceBytes)
    }
    runs.push(outs)
    for (const v of [x.sample, x.ctx, x.te, other]) v.dispose()
    rt.dispose()
  }
  delete process.env.PG25_CUDA_GRAPHS
  const [eager, replayed] = runs
  t.deepEqual(replayed, eager)
  t.notDeepEqual(eager[0], eager[1])
  t.deepEqual(eager[2], eager[0])
  // Call 0 runs eagerly and call 1 records; from call 2 on, a replay copies the keys and values in only
  // when the conditioning changed since the last one (calls 2 and 4), not when it stayed (call 3).
  const [B, L] = readGolden('unet.safetensors').encoder_hidden_states.shape
  const kvBytes = transformerChannels().reduce((s, c) => s + 2 * B * L * c, 0) * 2
  t.true(copied[3] < kvBytes, `call 3 copied ${copied[3]} bytes`)
  for (const i of [2, 4]) t.true(copied[i] >= kvBytes, `call ${i} copied ${copied[i]} bytes, the keys and values are ${kvBytes}`)
  t.deepEqual(emulationReport().misuse, [])
})
