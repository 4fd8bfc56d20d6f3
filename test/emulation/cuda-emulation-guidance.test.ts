// Classifier-free guidance without copies (issue 12): the UNet takes one latent for both halves of the
// conditioning (the conversion into the GPU's NHWC layout writes both), and the halves of its output are
// read in place (slice0 returns views on the GPU). Checked in the CPU emulation of CUDA against the
// concatenated call and the CPU backend.
import test from 'ava'
import { Runtime, TorchGenerator, UNetModel, readModelIndex, resolveComponent } from '../../lib'
import { TINY, maxAbsDiff, readGolden, relativeError } from '../support/helpers'
import { emulationReport, toHalf } from '../support/emulation'

async function unetOf (rt: Runtime): Promise<UNetModel> {
  return await UNetModel.load(rt, await resolveComponent(TINY, await readModelIndex(TINY), 'unet', null, () => {}))
}

test.serial('one latent for both halves gives the concatenated call\'s output, on the GPU (graphs replayed) and the CPU', async t => {
  const g = readGolden('unet.safetensors')
  const [B, C, H, W] = g.sample.shape
  t.is(B, 2)
  const one = g.sample.data.slice(0, C * H * W) // the first half's latent, used for both halves
  const outs: Float32Array[] = []
  for (const device of ['cuda', 'cpu'] as const) {
    const rt = Runtime.open(device, () => {})
    const unet = await unetOf(rt)
    const ctx = rt.fromHost(g.encoder_hidden_states.data, g.encoder_hidden_states.shape)
    const te = rt.fromHost(g.text_embeds.data, g.text_embeds.shape)
    const x1 = rt.fromHost(one, [1, C, H, W])
    const x2 = rt.engine.concat(x1, x1, 0)
    for (let rep = 0; rep < 2; rep++) { // the second call replays each recording
      const a = rt.toHost(await unet.predict(x1, g.timestep.data[0], ctx, te, g.time_ids.data))
      const b = rt.toHost(await unet.predict(x2, g.timestep.data[0], ctx, te, g.time_ids.data))
      t.is(a.length, B * C * H * W)
      t.is(maxAbsDiff(a, b), 0, `${device} call ${rep}: batch-1 sample against the concatenated one`)
      if (rep === 0) outs.push(a)
    }
    if (device === 'cuda') { // a sample handed over channels last is read as what it is, recorded or not
      const x1n = await rt.engine.op('to_layout', [x1], { nhwc: 1 })
      const c = rt.toHost(await unet.predict(x1n, g.timestep.data[0], ctx, te, g.time_ids.data))
      t.is(maxAbsDiff(c, outs[0]), 0, 'NHWC sample')
    }
    const err = await t.throwsAsync(unet.predict(rt.fromHost(new Float32Array(3 * C * H * W), [3, C, H, W]), 0.5, ctx, te, g.time_ids.data))
    t.regex(err!.message, /unet: the sample's batch 3 does not divide encoder_hidden_states' batch 2/)
    rt.dispose()
  }
  const e = relativeError(outs[0], outs[1])
  t.true(e <= 2e-2, `GPU against CPU: ${e}`)
})

test.serial('repeat_batch writes every copy in the layout conversion, on both layouts', async t => {
  const cpu = Runtime.open('cpu', () => {})
  const gpu = Runtime.open('cuda', () => {})
  const x = new TorchGenerator(3).randn([2, 5, 3, 4]).map(toHalf)
  const want = new Float32Array([...x, ...x, ...x])
  t.deepEqual(Array.from(cpu.toHost(await cpu.engine.op('repeat_batch', [cpu.fromHost(x, [2, 5, 3, 4])], { times: 3, nhwc: 0 }))), Array.from(want))
  for (const nhwc of [0, 1]) {
    emulationReport(true)
    const xs = gpu.fromHost(x, [2, 5, 3, 4])
    const before = emulationReport()
    const y = await gpu.engine.op('repeat_batch', [xs], { times: 3, nhwc })
    const r = emulationReport()
    t.deepEqual(Array.from(gpu.toHost(y)), Array.from(want), `nhwc ${nhwc}`)
    if (nhwc === 1) t.is(r.launches - before.launches, 1, 'one kernel converts and repeats')
    xs.dispose()
    y.dispose()
  }
  cpu.dispose()
  gpu.dispose()
})

test.serial('slice0 of an aligned batch entry is a view on the GPU: no memory, no copy, the values of the entry', async t => {
  const gpu = Runtime.open('cuda', () => {})
  const x = new TorchGenerator(4).randn([2, 4, 16, 16]).map(toHalf)
  const t2 = gpu.fromHost(x, [2, 4, 16, 16])
  const held = gpu.engine.bytesInUse()
  const halves = [gpu.engine.slice0(t2, 0, 1), gpu.engine.slice0(t2, 1, 1)]
  t.is(gpu.engine.bytesInUse(), held, 'the halves take no memory')
  t2.dispose() // the views keep the memory they look into
  t.deepEqual(Array.from(gpu.toHost(halves[1])), Array.from(x.slice(4 * 256)))
  const eps = gpu.engine.lincomb([[-2, halves[0]], [3, halves[1]]])
  const want = x.slice(0, 4 * 256).map((u, i) => -2 * u + 3 * x[4 * 256 + i])
  t.true(maxAbsDiff(gpu.toHost(eps), want) <= 2e-2, 'guidance read from the views')
  // An entry whose offset would break the 256-byte alignment is copied instead.
  const odd = gpu.fromHost(new TorchGenerator(5).randn([3, 5]).map(toHalf), [3, 5])
  const s = gpu.engine.slice0(odd, 1, 2)
  t.deepEqual(Array.from(gpu.toHost(s)), Array.from(gpu.toHost(odd).slice(5)))
  for (const y of [...halves, eps, odd, s]) y.dispose()
  t.is(gpu.engine.bytesInUse(), held - x.length * 2, 'every byte back once the last view goes')
  gpu.dispose()
  t.deepEqual(emulationReport().misuse, [])
})
