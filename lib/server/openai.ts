// OpenAI's images API, so that the openai SDKs and the apps built on them work against this server:
// POST /v1/images/generations (JSON), POST /v1/images/edits (multipart: image, an optional mask whose
// transparent area is repainted, prompt) and GET /v1/models. Errors come in OpenAI's shape,
// { error: { message, type, param, code } }, so the SDKs raise their own error classes. Our own options
// (seed, steps, guidanceScale, negativePrompt, loras, ...) ride along as extra body fields.
import sharp from 'sharp'
import { Pg25Error } from '../errors'
import { probeImage, type RGBImage } from '../image'
import { show } from '../options'
import { encodeImage, type ImageFormat } from '../output-file'
import type { ApiContext, Route } from './api'
import { checkCaller, checkOrigin, checkToken, HttpError, readBody, send, type ErrorBody } from './http'
import { parseFields, requestPixels } from './request'

const bad = (msg: string): never => { throw new Pg25Error('PG25_INVALID_ARGUMENT', msg) }

/** OpenAI's error body: its `type` by status, our code as `code`. */
export const openaiError: ErrorBody = (status, code, message) => ({
  error: {
    message,
    type: status === 401 ? 'authentication_error' : status === 403 ? 'permission_error' : status >= 500 ? 'server_error' :
      'invalid_request_error',
    param: null,
    code
  }
})

/** OpenAI's fields that change nothing here (each model of ours has one quality and one style). */
const IGNORED = new Set(['quality', 'style', 'user', 'moderation', 'output_compression', 'input_fidelity'])
/** Our own /generate fields a client may add; the size and count come from `size` and `n`. */
const EXTRAS = new Set(['negativePrompt', 'prompt2', 'negativePrompt2', 'steps', 'guidanceScale', 'scheduler', 'seed', 'strength', 'loras',
  'originalSize', 'cropTopLeft', 'targetSize', 'metadata'])
const OWN = new Set(['prompt', 'model', 'n', 'size', 'response_format', 'output_format', 'background', 'stream', 'partial_images', 'image',
  'mask'])

interface ImagesRequest {
  fields: Record<string, unknown>
  model: string | undefined
  format: ImageFormat
  size: string | undefined
}

/** OpenAI's fields -> /generate's, checked by the same code as /generate's body. */
function translate (body: Record<string, unknown>, ctx: ApiContext): ImagesRequest {
  const fields: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(body)) {
    if (v === null || v === undefined || IGNORED.has(k) || OWN.has(k)) continue
    if (!EXTRAS.has(k)) {
      // Refused with /generate's hint for it (`negative_prompt`: this library calls it "negativePrompt").
      parseFields({ prompt: '', [k]: v })
      bad(`unknown field ${show(k)}`)
    }
    fields[k] = v
  }
  fields.prompt = body.prompt
  if (typeof body.prompt !== 'string' || body.prompt === '') bad('"prompt" must be a non-empty string')
  if (body.model !== undefined && body.model !== null &&
    typeof body.model !== 'string') bad(`"model" must be a string, got ${show(body.model)}`)
  if (body.response_format === 'url') {
    bad('"response_format": "url" is not supported: this server keeps no images to link to; ask for "b64_json" (the default)')
  }
  if (body.response_format !== undefined && body.response_format !== null && body.response_format !== 'b64_json') {
    bad(`"response_format" must be "b64_json", got ${show(body.response_format)}`)
  }
  if (body.stream === true) bad('"stream": true is not supported: the images come whole, in one answer')
  if (body.background === 'transparent') bad('"background": "transparent" is not supported: the model paints every pixel')
  const format = body.output_format ?? 'png'
  if (format !== 'png' && format !== 'jpeg' &&
    format !== 'webp') bad(`"output_format" must be "png", "jpeg" or "webp", got ${show(format)}`)
  if (body.n !== undefined && body.n !== null) fields.count = body.n
  const size = body.size === undefined || body.size === null || body.size === 'auto' ? undefined : body.size
  if (size !== undefined) {
    const m = typeof size === 'string' ? /^(\d{1,5})x(\d{1,5})$/.exec(size) : null
    if (m === null) bad(`"size" must be "WIDTHxHEIGHT" (e.g. "1024x1024") or "auto", got ${show(size)}`)
    fields.width = Number(m![1])
    fields.height = Number(m![2])
  }
  return { fields, model: (body.model as string | undefined) ?? ctx.model(), format: format as ImageFormat,
    size: size as string | undefined }
}

/** Runs the request and answers with OpenAI's images response (plus `seed`). */
async function answer (req: Parameters<Route>[0], res: Parameters<Route>[1], ctx: ApiContext, r: ImagesRequest,
  images?: { image: Buffer, mask?: RGBImage }): Promise<void> {
  const { prompt, options, metadata } = parseFields(r.fields)
  if (images !== undefined) Object.assign(options, images)
  ctx.checkPixels(await requestPixels(options, ctx.runner.defaultSize))
  await ctx.run(req, res, 1, async run => {
    const out = await run(prompt, options)
    const data = await Promise.all(out.images.map(async img => ({
      b64_json: (r.format === 'png' ? await img.toPNG({ metadata }) : await encodeImage(img, r.format)).toString('base64')
    })))
    send(res, 200, { created: Math.floor(Date.now() / 1000), data, model: r.model, output_format: r.format,
      size: `${out.width}x${out.height}`, seed: out.seed })
  })
}

const generations: Route = async (req, res, ctx) => {
  if (req.method !== 'POST') throw new HttpError(405, 'METHOD_NOT_ALLOWED', 'use POST', { allow: 'POST' })
  checkCaller(req, ctx.token, ctx.cors)
  let body: unknown
  try {
    body = JSON.parse((await readBody(req, ctx.maxBody)).toString('utf8'))
  } catch (err) {
    if (err instanceof HttpError) throw err
    bad('the body must be JSON')
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) bad('the body must be a JSON object')
  await answer(req, res, ctx, translate(body as Record<string, unknown>, ctx))
}

/** Multipart values are strings: numbers and JSON fields are read back as the JSON body would carry them. */
function fromForm (name: string, v: string): unknown {
  if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v) && name !== 'prompt' && !name.toLowerCase().includes('prompt')) return Number(v)
  if (v === 'true' || v === 'false') return v === 'true'
  if (/^[{[]/.test(v) && name !== 'prompt') {
    try {
      return JSON.parse(v)
    } catch {}
  }
  return v
}

/** The mask OpenAI's way (transparent = repaint) as ours (white = repaint): 255 - alpha, binarized by the pipeline at one half. */
async function maskFromAlpha (png: Buffer, what: string): Promise<RGBImage> {
  await probeImage(png, what) // the header's size is checked before anything is decoded
  const img = sharp(png)
  if ((await img.metadata()).hasAlpha !== true) {
    bad(`${what} has no alpha channel: OpenAI's masks are PNGs whose transparent area is repainted`)
  }
  const { data, info } = await img.ensureAlpha().extractChannel(3).raw().toBuffer({ resolveWithObject: true })
  const rgb = new Uint8Array(info.width * info.height * 3)
  for (let i = 0; i < info.width * info.height; i++) rgb.fill(255 - data[i], i * 3, i * 3 + 3)
  return { width: info.width, height: info.height, data: rgb }
}

/** Whether any pixel of the image is transparent (then, without a mask, that is the area to repaint, as DALL-E 2 edits). */
async function hasTransparency (img: Buffer): Promise<boolean> {
  const s = sharp(img)
  if ((await s.metadata()).hasAlpha !== true) return false
  const { data } = await s.extractChannel(3).raw().toBuffer({ resolveWithObject: true })
  return data.some(a => a < 128)
}

const edits: Route = async (req, res, ctx) => {
  if (req.method !== 'POST') throw new HttpError(405, 'METHOD_NOT_ALLOWED', 'use POST', { allow: 'POST' })
  checkCaller(req, ctx.token, ctx.cors, ['multipart/form-data'])
  const raw = await readBody(req, ctx.maxBody)
  let form: Awaited<ReturnType<Response['formData']>>
  try {
    // Node's own multipart parser (undici's, behind Response.formData).
    form = await new Response(new Blob([new Uint8Array(raw)]), { headers: { 'content-type': req.headers['content-type']! } }).formData()
  } catch (err) {
    throw bad(`the body is not valid multipart/form-data (${(err as Error).message})`)
  }
  const body: Record<string, unknown> = {}
  const files: Record<string, Buffer[]> = {}
  for (const [name, value] of form as unknown as Iterable<[string, string | Blob]>) {
    const key = name.replace(/\[\]$/, '')
    if (typeof value === 'string') body[key] = fromForm(key, value)
    else (files[key] ??= []).push(Buffer.from(await value.arrayBuffer()))
  }
  for (const k of ['image', 'mask']) if (typeof body[k] === 'string') bad(`"${k}" must be a file part of the form`)
  const images = files.image ?? []
  if (images.length !== 1) bad(images.length === 0 ? 'an edit needs "image": the PNG, JPEG or WebP to edit' :
    `one "image" at a time, got ${images.length}`)
  if ((files.mask ?? []).length > 1) bad('one "mask" at a time')
  const r = translate(body, ctx)
  await probeImage(images[0], 'image')
  const given = files.mask?.[0]
  const mask = given !== undefined ? await maskFromAlpha(given, 'mask') : await hasTransparency(images[0]) ?
      await maskFromAlpha(images[0], 'image') : undefined
  // Without a mask the whole image is redrawn, as far as `strength` says (A1111's default, 0.75).
  if (mask === undefined) r.fields.strength ??= 0.75
  await answer(req, res, ctx, r, { image: images[0], mask })
}

const models: Route = async (req, res, ctx) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'METHOD_NOT_ALLOWED', 'use GET', { allow: 'GET, HEAD' })
  checkOrigin(req, ctx.cors)
  checkToken(req, ctx.token)
  send(res, 200, { object: 'list', data: [{ id: ctx.model(), object: 'model', created: 0, owned_by: 'pg25' }] })
}

export const OPENAI_ROUTES: Record<string, Route> = {
  '/v1/images/generations': generations,
  '/v1/images/edits': edits,
  '/v1/models': models
}
