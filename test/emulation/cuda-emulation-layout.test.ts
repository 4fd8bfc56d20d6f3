// NHWC on the GPU (issue 12): the CUDA backend keeps images channels last from conv_in to conv_out, the
// CPU backend stays the NCHW reference. Every image op in NHWC, run in the CPU emulation of CUDA, against
// the CPU backend on the same values; the golden UNet and VAE stages in the NCHW layout too
// (PG25_CUDA_LAYOUT=nchw, which gpu-check times beside NHWC); a LoRA merged into a convolution kernel
// held as KRSC; and mixed layouts refused by name.
import test from 'ava'
import { Pipeline, Runtime, TorchGenerator, UNetModel, VAEModel, readModelIndex, resolveComponent } from '../../lib'
import type { NativeTensor } from '../../lib/native'
import { TINY, goldenUnet, readGolden, relativeError } from '../support/helpers'
import { compareOp, emulationReport, halfData, type OpCase, psnr } from '../support/emulation'

const cpu = Runtime.open('cpu', () => {})
const gpu = Runtime.open('cuda', () => {})
const data = halfData(500)

/** x channels last on the GPU (the layout its image ops keep). */
async function nhwc (x: NativeTensor): Promise<NativeTensor> {
  const y = await gpu.engine.op('to_layout', [x], { nhwc: 1 })
  x.dispose()
  return y
}

// The op on the CPU with NCHW inputs, and on the GPU with every rank-4 input (kernels included) NHWC.
const compare = async (t: any, c: OpCase): Promise<void> =>
  await compareOp(t, c, cpu, gpu, data, async x => x.shape.length === 4 ? await nhwc(x) : x)

const cases: OpCase[] = [
  { op: 'add', inputs: [[[2, 5, 3, 7], 1], [[2, 5, 3, 7], 1]] },
  { op: 'silu', inputs: [[[2, 16, 4, 5], 2]] },
  { op: 'lincomb', inputs: [[[2, 4, 9, 7], 1], [[2, 4, 9, 7], 1]], attrs: { coefficients: [0.5, -1.5] } },
  { op: 'channel_affine', inputs: [[[2, 3, 5, 7], 1]], attrs: { scale: [0.5, -2, 3], shift: [1, 0, -0.25] } },
  { op: 'cast', inputs: [[[1, 8, 3, 3], 1]], attrs: { wide: 1 }, tol: 1e-2 },
  // GroupNorm channels last: groups straddling the 8-channel loads (320 / 32 = 10 channels), one load per
  // group (512 / 32), several loads per group, channels not a multiple of 8 (one value per thread), more
  // channels than a block has threads (SDXL's widest, 2560, on up_blocks.0's joined skip), rows over several
  // chunks, and a layer wider than the kernel takes (through NCHW).
  { op: 'group_norm', inputs: [[[2, 320, 6, 5], 2], [[320], 1], [[320], 1]], attrs: { groups: 32, eps: 1e-5, silu: 1 } },
  { op: 'group_norm', inputs: [[[1, 512, 4, 4], 2], [[512], 1], [[512], 1]], attrs: { groups: 32, eps: 1e-6, silu: 0 } },
  { op: 'group_norm', inputs: [[[2, 64, 33, 31], 2], [[64], 1], [[64], 1]], attrs: { groups: 4, eps: 1e-6, silu: 1 } },
  { op: 'group_norm', inputs: [[[2, 6, 17, 9], 2], [[6], 1], [[6], 1]], attrs: { groups: 3, eps: 1e-6, silu: 0 } },
  { op: 'group_norm', inputs: [[[1, 300, 3, 5], 2], [[300], 1], [[300], 1]], attrs: { groups: 30, eps: 1e-5, silu: 0 } },
  { op: 'group_norm', inputs: [[[1, 32, 96, 96], 2], [[32], 1], [[32], 1]], attrs: { groups: 8, eps: 1e-5, silu: 1 } },
  { op: 'group_norm', inputs: [[[2, 2560, 3, 2], 2], [[2560], 1], [[2560], 1]], attrs: { groups: 32, eps: 1e-5, silu: 1 } },
  { op: 'group_norm', inputs: [[[1, 3080, 2, 3], 2], [[3080], 1], [[3080], 1]], attrs: { groups: 40, eps: 1e-5, silu: 1 } },
  { op: 'group_norm', inputs: [[[1, 1280, 1, 1], 2], [[1280], 1], [[1280], 1]], attrs: { groups: 32, eps: 1e-5, silu: 1 } },
  // With a time embedding added first: 8 channels per load, one value per load, and through NCHW.
  { op: 'group_norm', inputs: [[[2, 320, 6, 5], 2], [[320], 1], [[320], 1], [[2, 320], 3]], attrs: { groups: 32, eps: 1e-5, silu: 1 } },
  { op: 'group_norm', inputs: [[[2, 6, 17, 9], 2], [[6], 1], [[6], 1], [[2, 6], 3]], attrs: { groups: 3, eps: 1e-6, silu: 1 } },
  { op: 'group_norm', inputs: [[[1, 3080, 2, 3], 2], [[3080], 1], [[3080], 1], [[1, 3080], 3]], attrs: { groups: 40, eps: 1e-5, silu: 1 } },
  // Spatial moves: eight channels per 16-byte copy, and one value at a time.
  { op: 'pad2d', inputs: [[[2, 16, 5, 6], 1]], attrs: { left: 0, right: 1, top: 0, bottom: 1 } },
  { op: 'pad2d', inputs: [[[1, 3, 5, 6], 1]], attrs: { left: 1, right: 2, top: 2, bottom: 0 } },
  { op: 'upsample_nearest', inputs: [[[2, 8, 5, 7], 1]], attrs: { oh: 10, ow: 14 } },
  { op: 'upsample_nearest', inputs: [[[1, 5, 3, 7], 1]], attrs: { oh: 7, ow: 9 } },
  // The UNet's skip connections: channels joined, per pixel.
  { op: 'concat', inputs: [[[2, 8, 3, 5], 1], [[2, 16, 3, 5], 1]], attrs: { axis: 1 } },
  { op: 'concat', inputs: [[[2, 3, 3, 5], 1], [[2, 5, 3, 5], 1]], attrs: { axis: 1 } },
  { op: 'concat', inputs: [[[1, 4, 3, 5], 1], [[2, 4, 3, 5], 1]], attrs: { axis: 0 } },
  { op: 'slice0', inputs: [[[3, 4, 3, 5], 1]], attrs: { start: 1, count: 2 } },
  { op: 'image_to_tokens', inputs: [[[2, 5, 3, 7], 1]] },
  { op: 'conv2d', inputs: [[[2, 8, 9, 7], 1], [[16, 8, 3, 3], 0.3], [[16], 1], [[2, 16, 9, 7], 1]], attrs: { stride: 1, pad: 1 } },
  { op: 'conv2d', inputs: [[[1, 4, 11, 10], 1], [[8, 4, 3, 3], 0.3], [[8], 1]], attrs: { stride: 2, pad: 1 } },
  { op: 'conv2d', inputs: [[[2, 16, 6, 5], 1], [[8, 16, 1, 1], 0.3], [[8], 1]], attrs: { stride: 1, pad: 0 } }
]

for (const c of cases) {
  test.serial(`NHWC ${c.op} ${JSON.stringify(c.inputs.map(i => i?.[0] ?? null))} ${JSON.stringify(c.attrs ?? {})}`, async t => compare(t, c))
}

test.serial('NHWC im2col in several row chunks keeps every cuBLASLt operand 16-byte aligned', async t => {
  // K = 1624 * 9 values per row: the 64 MB column budget splits the 2 x 40 x 40 output rows into chunks,
  // each GEMM writing (and reading the residual) at a later row offset.
  process.env.PG25_DISABLE_CUDNN = '1'
  const im2col = Runtime.open('cuda', () => {})
  delete process.env.PG25_DISABLE_CUDNN
  const shapes = [[2, 1624, 40, 40], [8, 1624, 3, 3], [8], [2, 8, 40, 40]]
  const hosts = shapes.map((s, i) => data(s, i === 1 ? 0.02 : 1))
  const want = cpu.toHost(await cpu.engine.op('conv2d', hosts.map((h, i) => cpu.fromHost(h, shapes[i])), { stride: 1, pad: 1 }))
  const args = await Promise.all(hosts.map(async (h, i) => {
    const x = im2col.fromHost(h, shapes[i])
    if (shapes[i].length !== 4) return x
    const y = await im2col.engine.op('to_layout', [x], { nhwc: 1 })
    x.dispose()
    return y
  }))
  emulationReport(true)
  const y = await im2col.engine.op('conv2d', args, { stride: 1, pad: 1 })
  const r = emulationReport()
  const err = relativeError(im2col.toHost(y), want)
  t.true(err <= 3e-3, `relative error ${err}`)
  t.true(r.matmuls >= 2, `${r.matmuls} matmuls`)
  t.true(r.minMatmulAlignment >= 16, `smallest declared alignment ${r.minMatmulAlignment}`)
  for (const x of [...args, y]) x.dispose()
  im2col.dispose()
})

test.serial('to_layout round-trips on the GPU, and the CPU (the reference) refuses NHWC', async t => {
  const x = data([2, 12, 5, 3])
  const a = gpu.fromHost(x, [2, 12, 5, 3])
  const b = await nhwc(a)
  t.deepEqual(Array.from(gpu.toHost(b)), Array.from(x))
  const back = await gpu.engine.op('to_layout', [b], { nhwc: 0 })
  t.deepEqual(Array.from(gpu.toHost(back)), Array.from(x))
  // tokens_to_image gives the backend's layout: a view of NHWC images' own buffer.
  const tokens = await gpu.engine.op('image_to_tokens', [b], {})
  const img = await gpu.engine.op('tokens_to_image', [tokens], { h: 5, w: 3 })
  t.deepEqual(Array.from(gpu.toHost(img)), Array.from(x))
  for (const y of [b, back, tokens, img]) y.dispose()
  const c = cpu.fromHost(x, [2, 12, 5, 3])
  const err = await t.throwsAsync(cpu.engine.op('to_layout', [c], { nhwc: 1 }))
  t.regex(err!.message, /CPU backend keeps images NCHW/)
  c.dispose()
})

test.serial('ops refuse inputs in different layouts, naming the op', async t => {
  const x = data([1, 8, 3, 3])
  const a = gpu.fromHost(x, [1, 8, 3, 3])
  const b = await nhwc(gpu.fromHost(x, [1, 8, 3, 3]))
  for (const [op, attrs] of [['add', {}], ['concat', { axis: 1 }]] as const) {
    const err = await t.throwsAsync(gpu.engine.op(op, [a, b], attrs))
    t.is((err as any).code, 'PG25_INVALID_ARGUMENT')
    t.regex(err!.message, new RegExp(`op ${op}: the inputs are in different layouts`))
  }
  a.dispose()
  b.dispose()
})

test.serial('PG25_CUDA_LAYOUT other than nhwc or nchw is refused by name', t => {
  process.env.PG25_CUDA_LAYOUT = 'chw'
  try {
    const err = t.throws(() => Runtime.open('cuda', () => {}))
    t.regex(err!.message, /PG25_CUDA_LAYOUT must be "nhwc" or "nchw", got "chw"/)
  } finally {
    delete process.env.PG25_CUDA_LAYOUT
  }
})

async function component (name: string): Promise<any> {
  return await resolveComponent(TINY, await readModelIndex(TINY), name, null, () => {})
}

test.serial('PG25_CUDA_LAYOUT=nchw: the golden UNet and VAE stages in NCHW on the GPU as well', async t => {
  process.env.PG25_CUDA_LAYOUT = 'nchw'
  const rt = Runtime.open('cuda', () => {})
  delete process.env.PG25_CUDA_LAYOUT
  const unet = await UNetModel.load(rt, await component('unet'))
  const { err } = await goldenUnet(rt, unet)
  t.true(err <= 2e-2, `unet: ${err}`)
  const vae = await VAEModel.load(rt, await component('vae'))
  const g = readGolden('vae.safetensors')
  const img = await vae.decode(rt.fromHost(g.latent.data, g.latent.shape), false)
  const e = relativeError(rt.toHost(img), g.image.data)
  t.true(e <= 2e-2, `vae decode: ${e}`)
  rt.dispose()
})

test.serial('a LoRA merged into a convolution kernel held as KRSC (after a recorded call) gives the CPU backend\'s UNet output, and unloads', async t => {
  const name = 'down_blocks.0.resnets.0.conv1.weight'
  const outs: Float32Array[] = []
  for (const rt of [Runtime.open('cpu', () => {}), Runtime.open('cuda', () => {})]) {
    const unet = await UNetModel.load(rt, await component('unet'))
    const shape = rt.engine.weightShapes(unet.id)[name]
    t.is(shape.length, 4, name)
    const out = shape[0]
    const k = shape[1] * shape[2] * shape[3]
    const rank = 3
    const g = new TorchGenerator(77)
    const up = g.randn([out * rank]).map(v => v * 0.2)
    const down = g.randn([rank * k]).map(v => v * 0.2)
    t.true((await goldenUnet(rt, unet)).err <= 2e-2, 'before the merge') // on the GPU: the call that records the graph
    await rt.engine.mergeLoRA(unet.id, [{ name, rank, up, down }])
    const u = readGolden('unet.safetensors')
    const y = await unet.predict(rt.fromHost(u.sample.data, u.sample.shape), u.timestep.data[0],
      rt.fromHost(u.encoder_hidden_states.data, u.encoder_hidden_states.shape),
      rt.fromHost(u.text_embeds.data, u.text_embeds.shape), u.time_ids.data)
    outs.push(rt.toHost(y))
    t.true(relativeError(outs[outs.length - 1], u.out.data) > 0.05, 'the update changes the output')
    await rt.engine.mergeLoRA(unet.id, [{ name, rank: 0 }])
    const base = await goldenUnet(rt, unet)
    t.true(base.err <= 2e-2, `unloaded: ${base.err}`)
    rt.dispose()
  }
  const err = relativeError(outs[1], outs[0])
  t.true(err <= 2e-2, `merged: GPU against CPU ${err}`)
})

test.serial('a whole image at a size no power of two divides (latents 9x11): NHWC on the GPU against the CPU at PSNR >= 35 dB', async t => {
  // Odd latent sides take the stride-2 convolutions' edges and the upsamples to the skips' sizes.
  const opts = { steps: 3, width: 72, height: 88, seed: 5, guidanceScale: 4 }
  const images: Uint8Array[] = []
  for (const device of ['cpu', 'cuda'] as const) {
    const pipe = await Pipeline.fromPretrained(TINY, { device, onWarning: () => {} })
    images.push((await pipe.generate('a lighthouse at dusk', opts)).images[0].data)
    await pipe.dispose()
  }
  t.is(images[0].length, 72 * 88 * 3)
  const db = psnr(images[1], images[0])
  t.true(db >= 35, `${db.toFixed(1)} dB`)
})

test.after.always('the emulation saw no misuse of CUDA', t => {
  cpu.dispose()
  gpu.dispose()
  t.deepEqual(emulationReport().misuse, [])
})
