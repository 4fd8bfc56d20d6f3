// CUDA graphs: a UNet call runs eagerly the first time it sees its input shapes (the libraries' lazy
// set-up happens outside any capture), is recorded the second time and replayed after. Shown in the CPU
// emulation of CUDA, whose graphs give each replay fresh (NaN-poisoned) memory for the graph's
// allocations and poison what the graph frees at the point it frees it, so a replay that missed a new
// input value, or read a buffer after its free node, gives a wrong answer here. A recording a library
// refuses leaves those shapes eager, with a notice; the calls themselves still run.
import test from 'ava'
import { Runtime, TorchGenerator, UNetModel, readModelIndex, resolveComponent } from '../../lib'
import { TINY, goldenUnet } from '../support/helpers'
import { emulationReport, toHalf } from '../support/emulation'

const component = async (name: string): Promise<any> => await resolveComponent(TINY, await readModelIndex(TINY), name, null, () => {})

interface Call { sample: Float32Array, shape: number[], t: number, ctx: Float32Array, te: Float32Array, ids: Float32Array }

function calls (unet: UNetModel, sizes: number[]): Call[] {
  const { inChannels, crossAttentionDim, textEmbedsDim } = unet.info
  return sizes.map((side, i) => {
    const g = new TorchGenerator(100 + i)
    const half = (shape: number[]): Float32Array => g.randn(shape).map(toHalf)
    return {
      sample: half([2, inChannels, side, side]),
      shape: [2, inChannels, side, side],
      t: 0.25 * Math.log(0.5 + 3 * i),
      ctx: half([2, 77, crossAttentionDim]),
      te: half([2, textEmbedsDim]),
      ids: Float32Array.from([side * 8, side * 8, 0, 0, side * 8, side * 8, side * 8, side * 8, 0, 0, side * 8, side * 8])
    }
  })
}

async function predict (rt: Runtime, unet: UNetModel, c: Call): Promise<{ out: Float32Array, launches: number }> {
  const inputs = [
    rt.fromHost(c.sample, c.shape),
    rt.fromHost(c.ctx, [2, 77, unet.info.crossAttentionDim]),
    rt.fromHost(c.te, [2, unet.info.textEmbedsDim])
  ]
  emulationReport(true)
  const y = await unet.predict(inputs[0], c.t, inputs[1], inputs[2], c.ids)
  const launches = emulationReport().launches // the call's own launches
  const out = rt.toHost(y)
  for (const x of [...inputs, y]) x.dispose()
  return { out, launches }
}

async function load (graphs: boolean, notices: string[] = []): Promise<{ rt: Runtime, unet: UNetModel }> {
  const rt = Runtime.open('cuda', n => notices.push(n))
  const unet = await UNetModel.load(rt, await component('unet'))
  // The choice is made at a UNet's first call.
  process.env.PG25_CUDA_GRAPHS = graphs ? '1' : '0'
  return { rt, unet }
}

test.serial('replayed UNet calls equal calls launched kernel by kernel, for new inputs and new shapes', async t => {
  const eager = await load(false)
  const expected = []
  const cs = calls(eager.unet, [8, 8, 12, 8, 12, 12, 8])
  for (const c of cs) expected.push(await predict(eager.rt, eager.unet, c))
  const graphed = await load(true)
  const got = []
  for (const c of cs) got.push(await predict(graphed.rt, graphed.unet, c))
  for (let i = 0; i < cs.length; i++) {
    let worst = 0
    for (let j = 0; j < got[i].out.length; j++) worst = Math.max(worst, Math.abs(got[i].out[j] - expected[i].out[j]))
    t.is(worst, 0, `call ${i}: the replay differs from the eager call by up to ${worst}`)
    t.false(got[i].out.some(Number.isNaN), `call ${i} read memory nothing wrote`)
  }
  // Calls 0 and 2 run eagerly (the first of 8x8, then 12x12 latents), 1 and 4 record; 3, 5 and 6 replay:
  // no kernel launched one by one but the two conversions of the host-made time embeddings.
  for (const i of [0, 1, 2, 4]) t.true(got[i].launches > 100, `call ${i} ran or recorded ${got[i].launches} launches`)
  for (const i of [3, 5, 6]) t.true(got[i].launches <= 2, `call ${i} launched ${got[i].launches} kernels`)
  for (const i of cs.keys()) t.true(expected[i].launches > 100)
  // Distinct inputs really gave distinct outputs (a replay stuck on its first inputs would not).
  t.notDeepEqual(got[0].out, got[1].out)
  const r = emulationReport()
  t.deepEqual(r.misuse, [])
  eager.rt.dispose()
  graphed.rt.dispose()
  t.is(emulationReport().liveAllocations, 0, 'the graphs\' memory goes with the engine')
})

test.serial('a replayed UNet call matches diffusers (golden stage, twice)', async t => {
  const { rt, unet } = await load(true)
  for (let i = 0; i < 2; i++) {
    const { shape, expected, err } = await goldenUnet(rt, unet)
    t.deepEqual(shape, expected)
    t.true(err <= 2e-2, `call ${i}: ${err}`)
  }
  t.deepEqual(emulationReport().misuse, [])
  rt.dispose()
})

// PG25_EMU_CUDNN=uncapturable-plans: cuDNN may not build a plan inside a capture (engines compiled at run
// time); the first, eager call built them all, so the recording takes cuDNN's convolutions as they are.
// =uncapturable: cuDNN cannot run inside one at all; the recording fails once, with one notice, and those
// shapes stay eager, every call's output the eager engine's.
for (const mode of ['uncapturable-plans', 'uncapturable']) {
  test.serial(`PG25_EMU_CUDNN=${mode}: the calls still give the eager engine's outputs`, async t => {
    const eager = await load(false)
    const cs = calls(eager.unet, [8, 8, 8, 8])
    const expected = []
    for (const c of cs) expected.push(await predict(eager.rt, eager.unet, c))
    eager.rt.dispose()
    process.env.PG25_EMU_CUDNN = mode
    const notices: string[] = []
    const graphed = await load(true, notices)
    const got = []
    for (const c of cs) got.push(await predict(graphed.rt, graphed.unet, c))
    delete process.env.PG25_EMU_CUDNN
    for (let i = 0; i < cs.length; i++) t.deepEqual(got[i].out, expected[i].out, `call ${i}`)
    const recorded = notices.filter(n => /could not be recorded/.test(n))
    if (mode === 'uncapturable-plans') {
      t.deepEqual(recorded, [])
      for (const i of [2, 3]) t.true(got[i].launches <= 2, `call ${i} launched ${got[i].launches} kernels`)
    } else {
      t.is(recorded.length, 1, notices.join('\n'))
      t.regex(recorded[0], /CUDNN_STATUS_EXECUTION_FAILED_CUDART/)
      for (const i of [2, 3]) t.true(got[i].launches > 100, `call ${i} launched ${got[i].launches} kernels: eager`)
    }
    t.deepEqual(emulationReport().misuse, [])
    graphed.rt.dispose()
  })
}

// The device's size between what an eager call needs at its peak and what its recording needs (the
// graph's memory beside the fixed input buffers), measured on a first engine, and that engine's output.
async function roomBetween (t: any): Promise<{ c: Call, expected: { out: Float32Array }, bytes: number }> {
  const probe = await load(true)
  const [c] = calls(probe.unet, [8])
  emulationReport(true)
  const expected = await predict(probe.rt, probe.unet, c)
  const eagerPeak = emulationReport(true).peakBytes
  await predict(probe.rt, probe.unet, c)
  const recordPeak = emulationReport().peakBytes
  probe.rt.dispose()
  t.true(recordPeak > eagerPeak, `${recordPeak} <= ${eagerPeak}`)
  return { c, expected, bytes: Math.floor((eagerPeak + recordPeak) / 2) }
}

// No room at the recording (memory refused as the capture allocates), or only at the graph's first launch
// (PG25_EMU_GRAPH_MEMORY=launch: a driver that backs graph memory at launch): either way the call runs
// kernel by kernel, with one notice, and gives the eager output.
for (const at of ['recording', 'launch']) {
  test.serial(`no room for a graph's own memory at its ${at}: the call runs kernel by kernel, with a notice`, async t => {
    const { c, expected, bytes } = await roomBetween(t)
    const notices: string[] = []
    const { rt, unet } = await load(true, notices)
    process.env.PG25_EMU_DEVICE_MEMORY = String(bytes)
    if (at === 'launch') process.env.PG25_EMU_GRAPH_MEMORY = 'launch'
    try {
      for (let i = 0; i < 3; i++) t.deepEqual((await predict(rt, unet, c)).out, expected.out, `call ${i}`)
    } finally {
      delete process.env.PG25_EMU_DEVICE_MEMORY
      delete process.env.PG25_EMU_GRAPH_MEMORY
    }
    const refused = notices.filter(n => /could not be (recorded|replayed)/.test(n))
    t.is(refused.length, 1, notices.join('\n'))
    t.regex(refused[0], at === 'launch' ? /could not be replayed \(GPU out of memory/ : /could not be recorded.*out of memory/)
    t.deepEqual(emulationReport().misuse, [])
    rt.dispose()
  })
}
