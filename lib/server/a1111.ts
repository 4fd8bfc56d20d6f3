// AUTOMATIC1111's web UI API, as Open WebUI, SillyTavern and scripts call it: POST /sdapi/v1/txt2img
// and /sdapi/v1/img2img answer { images: [base64 PNG], parameters, info (a JSON string) }, and the
// GETs clients probe first (sd-models, samplers, schedulers, options, progress) answer in A1111's shapes.
// A1111's fields map to ours; those that would change the picture in ways this model cannot (hires
// fix, face restoration, scripts, other samplers) are refused by name; fields that change nothing here
// (saving, mask blur, inpainting fill) are ignored, and so are fields A1111 does not have (as its API
// ignores them), unless one is a near miss of a real field.
import { randomInt } from 'node:crypto'
import sharp from 'sharp'
import { Pg25Error } from '../errors'
import { loadImage, probeImage, type GeneratedImage, type RGBImage } from '../image'
import { closest, show, type GenerateOptions } from '../options'
import { packageVersion } from '../version'
import type { ApiContext, Route } from './api'
import { checkCaller, checkOrigin, checkToken, HttpError, readBody, send, type ErrorBody } from './http'
import { decodeImage, parseFields, requestPixels } from './request'

const bad = (msg: string): never => { throw new Pg25Error('PG25_INVALID_ARGUMENT', msg) }

/** A1111's error body (its API's exception handler): `detail` is what clients show. */
export const a1111Error: ErrorBody = (_status, code, message) => ({ error: code, detail: message, body: '', errors: message })

/** A1111's samplers we have, by every name clients use for them. */
const SAMPLERS: Record<string, 'dpmpp-2m' | 'euler'> = {
  'DPM++ 2M': 'dpmpp-2m', 'DPM++ 2M Karras': 'dpmpp-2m', k_dpmpp_2m: 'dpmpp-2m', Euler: 'euler', 'Euler Karras': 'euler', k_euler: 'euler'
}
const SAMPLER_NAMES: Record<'dpmpp-2m' | 'euler', string> = { 'dpmpp-2m': 'DPM++ 2M', euler: 'Euler' }
/** Our schedulers take Karras sigmas, the model's own schedule: A1111's 'Automatic' picks it too. */
const SCHEDULES = new Set(['Automatic', 'automatic', 'Karras', 'karras'])

const MAPPED = ['prompt', 'negative_prompt', 'steps', 'cfg_scale', 'width', 'height', 'seed', 'batch_size', 'n_iter', 'sampler_name',
  'sampler_index',
  'scheduler', 'denoising_strength', 'init_images', 'mask', 'inpainting_mask_invert', 'send_images', 'override_settings']
/** Fields that are fine at A1111's default, and refused by name otherwise: what they ask for cannot be done here. */
const AT_DEFAULT: Record<string, { ok: (v: unknown) => boolean, why: string }> = {
  enable_hr: { ok: v => v === false, why: 'hires fix is not available' },
  restore_faces: { ok: v => v === false, why: 'face restoration is not available' },
  tiling: { ok: v => v === false, why: 'tiling is not available' },
  subseed_strength: { ok: v => v === 0, why: 'variation seeds are not available' },
  seed_resize_from_h: { ok: v => v === -1 || v === 0, why: 'seed resizing is not available' },
  seed_resize_from_w: { ok: v => v === -1 || v === 0, why: 'seed resizing is not available' },
  styles: { ok: v => Array.isArray(v) && v.length === 0, why: 'this server has no saved styles: put them in the prompt' },
  script_name: { ok: v => v === '', why: 'scripts are not available' },
  script_args: { ok: v => Array.isArray(v) && v.length === 0, why: 'scripts are not available' },
  alwayson_scripts: { ok: v => typeof v === 'object' && v !== null && Object.keys(v).length === 0,
    why: 'extensions (alwayson_scripts) are not available' },
  refiner_checkpoint: { ok: v => v === '', why: 'a refiner is not available' },
  resize_mode: { ok: v => v === 0, why: 'only resize mode 0 (just resize) is available' },
  latent_mask: { ok: () => false, why: 'latent masks are not available' }
}
/** A1111 (and Forge) fields that change nothing here. */
const IGNORED = new Set(['subseed', 'do_not_save_samples', 'do_not_save_grid', 'eta', 's_min_uncond', 's_churn', 's_tmax', 's_tmin',
  's_noise', 'override_settings_restore_afterwards', 'refiner_switch_at', 'disable_extra_networks', 'comments', 'firstphase_width',
  'firstphase_height', 'hr_scale', 'hr_upscaler', 'hr_second_pass_steps', 'hr_resize_x', 'hr_resize_y', 'hr_checkpoint_name',
  'hr_sampler_name', 'hr_scheduler', 'hr_prompt', 'hr_negative_prompt', 'hr_cfg', 'hr_distilled_cfg', 'firstpass_image', 'force_task_id',
  'infotext', 'save_images', 'image_cfg_scale', 'mask_blur', 'mask_blur_x', 'mask_blur_y', 'mask_round', 'inpainting_fill',
  'inpaint_full_res', 'inpaint_full_res_padding', 'initial_noise_multiplier', 'include_init_images', 'distilled_cfg_scale',
  'sampler_index_hr', 'user'])
const KNOWN = [...MAPPED, ...Object.keys(AT_DEFAULT), ...IGNORED]

const DATA_URL = /^data:image\/[\w.+-]+;base64,/

/** A base64 image as A1111 takes it: plain, or a data: URL. */
function imageField (name: string, v: unknown): Buffer {
  const b64 = typeof v === 'string' ? v.replace(DATA_URL, '') : v
  return decodeImage(name, b64) ?? bad(`"${name}" must be a base64 PNG, JPEG or WebP`)
}

function samplerOf (body: Record<string, unknown>): 'dpmpp-2m' | 'euler' | undefined {
  const name = body.sampler_name ?? body.sampler_index
  if (body.scheduler !== undefined && !SCHEDULES.has(body.scheduler as string)) {
    bad(`scheduler ${show(body.scheduler)} is not available: the model's samplers run on Karras sigmas ("Automatic" or "Karras")`)
  }
  if (name === undefined || name === '') return undefined
  if (typeof name !== 'string' || !Object.hasOwn(SAMPLERS, name)) {
    bad(`sampler ${show(name)} is not available here: the samplers are "DPM++ 2M" and "Euler" (Karras sigmas)`)
  }
  return SAMPLERS[name as string]
}

interface A1111Request {
  prompt: string
  /** one generate() call's options, less its seed */
  options: GenerateOptions
  seed: number
  batch: number
  iterations: number
  send: boolean
  /** the request as `parameters` echoes it */
  echo: Record<string, unknown>
}

async function translate (body: unknown, ctx: ApiContext, img2img: boolean): Promise<A1111Request> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) bad('the body must be a JSON object')
  const b = Object.fromEntries(Object.entries(body as Record<string, unknown>).filter(([, v]) => v !== null)) as Record<string, unknown>
  for (const [k, v] of Object.entries(b)) {
    if (Object.hasOwn(AT_DEFAULT, k) && !AT_DEFAULT[k].ok(v)) bad(`"${k}": ${show(v)}: ${AT_DEFAULT[k].why}`)
    if (!KNOWN.includes(k)) {
      const near = closest(k, KNOWN)
      if (near !== undefined) bad(`unknown field ${show(k)}; did you mean ${show(near)}?`)
    }
  }
  const checkpoint = (b.override_settings as Record<string, unknown> | undefined)?.sd_model_checkpoint
  if (checkpoint !== undefined && checkpoint !== ctx.model()) {
    bad(`override_settings.sd_model_checkpoint ${show(checkpoint)}: this server runs one model, ${show(ctx.model())}`)
  }
  const int = (k: string, def: number): number => {
    const v = b[k] ?? def
    if (!Number.isInteger(v) || (v as number) < 1) bad(`"${k}" must be a positive integer, got ${show(v)}`)
    return v as number
  }
  const batch = int('batch_size', 1)
  const iterations = int('n_iter', 1)
  const seed = b.seed === undefined || b.seed === -1 ? randomInt(0, 2 ** 32) : b.seed
  // Our names for A1111's, checked by /generate's code (which names the field at fault).
  const fields: Record<string, unknown> = {
    prompt: b.prompt ?? '',
    negativePrompt: b.negative_prompt === '' ? undefined : b.negative_prompt,
    steps: b.steps,
    guidanceScale: b.cfg_scale,
    width: b.width,
    height: b.height,
    seed,
    count: batch,
    scheduler: samplerOf(b)
  }
  if (img2img) fields.strength = b.denoising_strength ?? 0.75
  const { prompt, options } = parseFields(Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)))
  if (img2img) {
    const inits = b.init_images
    if (!Array.isArray(inits) || inits.length === 0) bad('img2img needs "init_images": [base64 image]')
    if ((inits as unknown[]).length > 1) bad(`one init image at a time, got ${(inits as unknown[]).length}`)
    const image = imageField('init_images[0]', (inits as unknown[])[0])
    options.image = image
    if (b.mask !== undefined) options.mask = await maskOf(imageField('mask', b.mask), image, b.inpainting_mask_invert === 1)
  } else if (b.init_images !== undefined || b.mask !== undefined) {
    bad('init_images and mask go to /sdapi/v1/img2img')
  }
  if (b.send_images !== undefined &&
    typeof b.send_images !== 'boolean') bad(`"send_images" must be true or false, got ${show(b.send_images)}`)
  // A1111 echoes the request, but not its images.
  const echo = { ...b, init_images: null, mask: null, seed: b.seed ?? -1, batch_size: batch, n_iter: iterations }
  return { prompt, options: { ...options, preview: true }, seed: seed as number, batch, iterations, send: b.send_images !== false, echo }
}

/** A1111's mask (white = repaint, or black with inpainting_mask_invert) at the init image's size, as A1111 resizes it. */
async function maskOf (mask: Buffer, image: Buffer, invert: boolean): Promise<RGBImage> {
  const size = await probeImage(image, 'init_images[0]')
  await probeImage(mask, 'mask')
  const rgb = await loadImage(mask, { width: size.width, height: size.height }, 'mask')
  if (invert) for (let i = 0; i < rgb.data.length; i++) rgb.data[i] = 255 - rgb.data[i]
  return rgb
}

/** A1111's `info`: what it reports of a run, as a JSON string. */
function infoOf (r: A1111Request, ctx: ApiContext, images: GeneratedImage[], seeds: number[],
  size: { width: number, height: number }): string {
  const o = r.options
  const now = new Date().toISOString().replace(/\D/g, '').slice(0, 14)
  return JSON.stringify({
    prompt: r.prompt,
    all_prompts: images.map(() => r.prompt),
    negative_prompt: o.negativePrompt ?? '',
    all_negative_prompts: images.map(() => o.negativePrompt ?? ''),
    seed: r.seed,
    all_seeds: seeds,
    subseed: -1,
    all_subseeds: seeds.map(() => -1),
    subseed_strength: 0,
    width: size.width,
    height: size.height,
    sampler_name: SAMPLER_NAMES[o.scheduler ?? 'dpmpp-2m'],
    cfg_scale: o.guidanceScale ?? 3,
    steps: o.steps ?? 50,
    batch_size: r.batch,
    restore_faces: false,
    face_restoration_model: null,
    sd_model_name: ctx.model(),
    sd_model_hash: null,
    sd_vae_name: null,
    sd_vae_hash: null,
    seed_resize_from_w: -1,
    seed_resize_from_h: -1,
    denoising_strength: o.strength ?? null,
    extra_generation_params: {},
    index_of_first_image: 0,
    infotexts: images.map(i => i.parameters),
    styles: [],
    job_timestamp: now,
    clip_skip: 1,
    is_using_inpainting_conditioning: false,
    version: `@pg25/native ${packageVersion()}`
  })
}

const generate = (img2img: boolean): Route => async (req, res, ctx) => {
  if (req.method !== 'POST') throw new HttpError(405, 'METHOD_NOT_ALLOWED', 'use POST', { allow: 'POST' })
  checkCaller(req, ctx.token, ctx.cors)
  const r = await translate(await jsonBody(req, ctx), ctx, img2img)
  const pixels = await requestPixels(r.options, ctx.runner.defaultSize)
  ctx.checkPixels(pixels === null ? null : pixels * r.iterations)
  await ctx.run(req, res, r.iterations, async run => {
    const images: GeneratedImage[] = []
    const seeds: number[] = []
    let size = { width: 0, height: 0 }
    // n_iter batches one after another, each seeded batch_size on from the last, as A1111 counts seeds.
    for (let k = 0; k < r.iterations; k++) {
      const seed = (r.seed + k * r.batch) % 2 ** 32
      const out = await run(r.prompt, { ...r.options, seed })
      images.push(...out.images)
      seeds.push(...out.images.map(() => seed))
      size = { width: out.width, height: out.height }
    }
    const pngs = r.send ? await Promise.all(images.map(async i => (await i.toPNG()).toString('base64'))) : []
    send(res, 200, { images: pngs, parameters: r.echo, info: infoOf(r, ctx, images, seeds, size) })
  })
}

async function jsonBody (req: Parameters<Route>[0], ctx: ApiContext): Promise<unknown> {
  const text = (await readBody(req, ctx.maxBody)).toString('utf8')
  try {
    return JSON.parse(text)
  } catch {
    return bad('the body must be JSON')
  }
}

/** A GET in A1111's API: the same origin and token checks as its POSTs. */
const get = (answer: (ctx: ApiContext, query: URLSearchParams) => Promise<unknown> | unknown): Route => async (req, res, ctx) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'METHOD_NOT_ALLOWED', 'use GET', { allow: 'GET, HEAD' })
  checkOrigin(req, ctx.cors)
  checkToken(req, ctx.token)
  const q = (req.url ?? '').indexOf('?')
  send(res, 200, await answer(ctx, new URLSearchParams(q < 0 ? '' : (req.url ?? '').slice(q + 1))))
}

const options = (ctx: ApiContext): Record<string, unknown> => ({
  sd_model_checkpoint: ctx.model(),
  sd_checkpoint_hash: null,
  sd_vae: 'Automatic',
  samples_format: 'png',
  CLIP_stop_at_last_layers: 1,
  live_previews_enable: true,
  show_progress_every_n_steps: 1
})

/** GET reads the options; POST (Open WebUI sends back what it read, with its model) changes none, and refuses another model. */
const optionsRoute: Route = async (req, res, ctx) => {
  if (req.method !== 'POST') { await get(options)(req, res, ctx); return }
  checkCaller(req, ctx.token, ctx.cors)
  const body = await jsonBody(req, ctx)
  if (body === null || typeof body !== 'object' || Array.isArray(body)) bad('the body must be a JSON object')
  const want = (body as Record<string, unknown>).sd_model_checkpoint
  if (want !== undefined && want !== null &&
    want !== ctx.model()) bad(`sd_model_checkpoint ${show(want)}: this server runs one model, ${show(ctx.model())}`)
  send(res, 200, null)
}

async function progress (ctx: ApiContext, query: URLSearchParams): Promise<unknown> {
  const p = ctx.progress.current()
  const withImage = query.get('skip_current_image') !== 'true'
  let image: string | null = null
  if (p?.preview !== undefined && withImage) {
    const { width, height, data } = p.preview
    image = (await sharp(Buffer.from(data), { raw: { width, height, channels: 3 } }).png().toBuffer()).toString('base64')
  }
  return {
    progress: p?.progress ?? 0,
    eta_relative: p?.eta ?? 0,
    state: {
      skipped: false,
      interrupted: false,
      stopping_generation: false,
      job: p === null ? '' : `job(${p.done + 1}/${p.calls})`,
      job_count: ctx.progress.size,
      job_timestamp: '0',
      job_no: p?.done ?? 0,
      sampling_step: p?.step ?? 0,
      sampling_steps: p?.steps ?? 0
    },
    current_image: image,
    textinfo: null,
    current_task: null
  }
}

export const A1111_ROUTES: Record<string, Route> = {
  '/sdapi/v1/txt2img': generate(false),
  '/sdapi/v1/img2img': generate(true),
  '/sdapi/v1/options': optionsRoute,
  '/sdapi/v1/progress': get(progress),
  '/sdapi/v1/sd-models': get(ctx => [{ title: ctx.model(), model_name: ctx.model(), hash: null, sha256: null, filename: ctx.model(),
    config: null }]),
  '/sdapi/v1/samplers': get(() => Object.values(SAMPLER_NAMES).map(name => ({
    name, aliases: Object.keys(SAMPLERS).filter(k => SAMPLER_NAMES[SAMPLERS[k]] === name && k !== name), options: { scheduler: 'karras' }
  }))),
  '/sdapi/v1/schedulers': get(() => [
    { name: 'automatic', label: 'Automatic', aliases: null, default_rho: -1, need_inner_model: false },
    { name: 'karras', label: 'Karras', aliases: null, default_rho: 7, need_inner_model: false }
  ]),
  '/sdapi/v1/sd-vae': get(() => []),
  '/sdapi/v1/upscalers': get(() => [{ name: 'None', model_name: null, model_path: null, model_url: null, scale: 4 }])
}
