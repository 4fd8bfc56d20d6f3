// A1111's API on createServer, with requests shaped as Open WebUI's AUTOMATIC1111 backend sends them
// (backend/open_webui/routers/images.py: GET options and sd-models, POST options back with the model,
// POST txt2img with prompt, batch_size, width, height, steps, negative_prompt and its extra params;
// an `authorization` header that is empty without auth and HTTP Basic with it).
import test from 'ava'
import sharp from 'sharp'
import type { Pipeline } from '../../lib'
import type { Pg25Server } from '../../lib/server'
import { serveTiny } from '../support/served'

const served = serveTiny(test, {}, { token: 's3cret' })
let pipe: Pipeline
let server: Pg25Server
let base: string
let guardedBase: string
test.serial.before(() => {
  ({ pipe, bases: [base, guardedBase], servers: [server] } = served)
})

const get = async (path: string, auth = '', at = base): Promise<Response> => await fetch(`${at}${path}`,
  { headers: { authorization: auth } })
const post = async (path: string, body: unknown, auth = '', at = base, signal?: AbortSignal): Promise<Response> =>
  await fetch(`${at}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: auth },
    body: JSON.stringify(body), signal })
const rgb = async (b64: string): Promise<Uint8Array> => new Uint8Array((await sharp(Buffer.from(b64, 'base64')).raw().toBuffer()))

test.serial('Open WebUI\'s flow: options, sd-models, options posted back, txt2img; images equal the pipeline\'s', async t => {
  const options = await (await get('/sdapi/v1/options')).json() as any
  t.is(options.sd_model_checkpoint, 'tiny-pg25')
  const models = await (await get('/sdapi/v1/sd-models')).json() as any[]
  t.deepEqual(models.map(m => [m.title, m.model_name]), [['tiny-pg25', 'tiny-pg25']])
  const set = await post('/sdapi/v1/options', { ...options, sd_model_checkpoint: models[0].title })
  t.is(set.status, 200)
  // AUTOMATIC1111_PARAMS (cfg_scale, sampler_name, scheduler) merged in, as Open WebUI does.
  const r = await post('/sdapi/v1/txt2img',
    { prompt: 'a cat', batch_size: 2, width: 64, height: 64, steps: 2, negative_prompt: 'dogs', cfg_scale: 5, sampler_name: 'Euler',
      scheduler: 'Karras', seed: 7 })
  t.is(r.status, 200)
  const j = await r.json() as any
  t.is(j.images.length, 2)
  t.is(typeof j.info, 'string')
  const info = JSON.parse(j.info)
  t.is(info.seed, 7)
  t.deepEqual(info.all_seeds, [7, 7])
  t.is(info.sampler_name, 'Euler')
  t.is(info.cfg_scale, 5)
  t.is(info.infotexts.length, 2)
  t.regex(info.infotexts[1], /Negative prompt: dogs\nSteps: 2, Sampler: Euler Karras, CFG scale: 5, Seed: 7, Size: 64x64, /)
  t.regex(info.infotexts[1], /Batch size: 2, Batch pos: 1/)
  t.is(j.parameters.prompt, 'a cat')
  t.is(j.parameters.batch_size, 2)
  const direct = await pipe.generate('a cat',
    { negativePrompt: 'dogs', width: 64, height: 64, steps: 2, guidanceScale: 5, scheduler: 'euler', seed: 7, count: 2 })
  t.deepEqual(await rgb(j.images[0]), direct.images[0].data)
  t.deepEqual(await rgb(j.images[1]), direct.images[1].data)
  const samplers = await (await get('/sdapi/v1/samplers')).json() as any[]
  t.deepEqual(samplers.map(s => s.name), ['DPM++ 2M', 'Euler'])
})

test.serial('seed -1 is random and reported; n_iter runs batches seeded batch_size apart', async t => {
  const r = await (await post('/sdapi/v1/txt2img', { prompt: 'a fox', width: 64, height: 64, steps: 1, seed: -1, n_iter: 2 })).json() as any
  const info = JSON.parse(r.info)
  t.true(Number.isInteger(info.seed) && info.seed >= 0)
  t.deepEqual(info.all_seeds, [info.seed, (info.seed + 1) % 2 ** 32])
  t.is(r.images.length, 2)
  t.is(r.parameters.seed, -1)
  const second = await pipe.generate('a fox', { width: 64, height: 64, steps: 1, seed: info.all_seeds[1] })
  t.deepEqual(await rgb(r.images[1]), second.images[0].data)
})

test.serial('what cannot be done is refused by name; harmless A1111 fields are ignored; near misses get a "did you mean"', async t => {
  const small = { prompt: 'x', width: 64, height: 64, steps: 1 }
  for (const [extra, re] of [
    [{ sampler_name: 'Euler a' }, /sampler "Euler a" is not available here: the samplers are "DPM\+\+ 2M" and "Euler"/],
    [{ scheduler: 'Exponential' }, /scheduler "Exponential" is not available/],
    [{ enable_hr: true }, /"enable_hr": true: hires fix is not available/],
    [{ restore_faces: true }, /face restoration/],
    [{ cfg_scal: 5 }, /unknown field "cfg_scal"; did you mean "cfg_scale"\?/],
    [{ override_settings: { sd_model_checkpoint: 'sdxl.safetensors' } }, /this server runs one model, "tiny-pg25"/],
    [{ steps: 0 }, /steps must be an integer from 1 to 1000/]
  ] as const) {
    const r = await post('/sdapi/v1/txt2img', { ...small, ...extra })
    t.is(r.status, 400, JSON.stringify(extra))
    const j = await r.json() as any
    t.regex(j.detail, re)
    t.is(j.error, 'PG25_INVALID_ARGUMENT')
  }
  const ok = await post('/sdapi/v1/txt2img',
    { ...small, enable_hr: false, restore_faces: false, tiling: false, styles: [], subseed: -1, subseed_strength: 0, eta: 0, s_churn: 0,
      do_not_save_grid: true, alwayson_scripts: {}, forge_only_field: 1 })
  t.is(ok.status, 200)
  const sent = await (await post('/sdapi/v1/txt2img', { ...small, send_images: false })).json() as any
  t.deepEqual(sent.images, [])
})

test.serial('img2img: a data-URL init image and a mask (white repaints, inpainting_mask_invert flips it) as generate() runs them',
  async t => {
    const px = Buffer.alloc(64 * 64 * 3)
    for (let i = 0; i < px.length; i++) px[i] = (i * 7) % 256
    const image = await sharp(px, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer()
    const half = Buffer.alloc(64 * 64 * 3)
    for (let y = 0; y < 32; y++) half.fill(255, y * 64 * 3, (y + 1) * 64 * 3)
    const mask = await sharp(half, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer()
    const body = { prompt: 'a boat', init_images: [`data:image/png;base64,${image.toString('base64')}`], steps: 4, seed: 5,
      denoising_strength: 0.5 }
    const plain = await (await post('/sdapi/v1/img2img', body)).json() as any
    t.deepEqual(await rgb(plain.images[0]), (await pipe.generate('a boat', { image, strength: 0.5, steps: 4, seed: 5 })).images[0].data)
    t.is(plain.parameters.init_images, null)
    t.is(JSON.parse(plain.info).denoising_strength, 0.5)
    const inpaint = await (await post('/sdapi/v1/img2img',
      { ...body, mask: mask.toString('base64'), inpainting_fill: 1, mask_blur: 4, inpaint_full_res: false })).json() as any
    t.deepEqual(await rgb(inpaint.images[0]),
      (await pipe.generate('a boat', { image, mask, strength: 0.5, steps: 4, seed: 5 })).images[0].data)
    const inverted = await (await post('/sdapi/v1/img2img',
      { ...body, mask: mask.toString('base64'), inpainting_mask_invert: 1 })).json() as any
    const negated = await sharp(half, { raw: { width: 64, height: 64, channels: 3 } }).negate().png().toBuffer()
    t.deepEqual(await rgb(inverted.images[0]),
      (await pipe.generate('a boat', { image, mask: negated, strength: 0.5, steps: 4, seed: 5 })).images[0].data)
    const none = await post('/sdapi/v1/img2img', { prompt: 'x' })
    t.is(none.status, 400)
    t.regex((await none.json() as any).detail, /needs "init_images"/)
  })

test.serial('/sdapi/v1/progress reports the running step, an ETA and a preview; a client that leaves cancels its run', async t => {
  const idle = await (await get('/sdapi/v1/progress')).json() as any
  t.is(idle.progress, 0)
  t.is(idle.state.job_count, 0)
  t.is(idle.current_image, null)
  const ac = new AbortController()
  const running = post('/sdapi/v1/txt2img', { prompt: 'a lighthouse', width: 64, height: 64, steps: 1000, seed: 1 }, '', base,
    ac.signal).catch(e => e)
  let p: any
  for (let i = 0; i < 200; i++) {
    p = await (await get('/sdapi/v1/progress')).json()
    if (p.state.sampling_step >= 2) break
    await new Promise(resolve => setTimeout(resolve, 25))
  }
  t.true(p.state.sampling_step >= 2)
  t.is(p.state.sampling_steps, 1000)
  t.true(p.progress > 0 && p.progress < 1)
  t.true(p.eta_relative > 0)
  t.is(p.state.job_count, 1)
  const meta = await sharp(Buffer.from(p.current_image, 'base64')).metadata()
  t.deepEqual([meta.format, meta.width, meta.height], ['png', 8, 8])
  const skipped = await (await get('/sdapi/v1/progress?skip_current_image=true')).json() as any
  t.is(skipped.current_image, null)
  const before = server.stats().cancelled
  ac.abort()
  await running
  let after = server.stats()
  for (let i = 0; i < 400 && after.cancelled === before; i++) {
    await new Promise(resolve => setTimeout(resolve, 25))
    after = server.stats()
  }
  t.is(after.cancelled, before + 1)
  t.is((await (await get('/sdapi/v1/progress')).json() as any).state.job_count, 0)
})

test.serial('with a token: HTTP Basic with it as the password works (A1111\'s --api-auth), anything else gets 401 in A1111\'s shape',
  async t => {
    const basic = (pair: string): string => `Basic ${Buffer.from(pair).toString('base64')}`
    t.is((await get('/sdapi/v1/options', '', guardedBase)).status, 401)
    const wrong = await get('/sdapi/v1/sd-models', basic('user:nope'), guardedBase)
    t.is(wrong.status, 401)
    t.regex((await wrong.json() as any).detail, /Authorization/)
    t.is((await get('/sdapi/v1/sd-models', basic('user:s3cret'), guardedBase)).status, 200)
    const r = await post('/sdapi/v1/txt2img', { prompt: 'x', width: 64, height: 64, steps: 1 }, 'Bearer s3cret', guardedBase)
    t.is(r.status, 200)
  })
