// What travels through Redis: a job's data is the JSON body `pg25 serve` accepts (an object, or the
// body's text), its progress `{ step, steps, sigma }` with optional raw RGB previews, its images a
// JSON record of base64 PNGs under a key of their own, and a failure the error's code and message.
import sharp from 'sharp'
import { AbortError, Pg25Error, type Pg25ErrorCode } from '../errors'
import { INPUT_IMAGE_BYTES, makeImage, readPngText, type RGBImage } from '../image'
import { readRegularFile } from '../io/regular-file'
import type { GenerateOptions, GenerateResult, StepInfo } from '../options'
import { parseRequest, type GenerateRequest, type ParsedRequest } from '../server/request'

/** A job's data: the server's JSON body, plus `preview: true` to have small previews in its progress. */
export type FleetJobData = GenerateRequest & { preview?: boolean }

/** A job's progress as the worker reports it. */
export interface FleetProgress {
  step: number
  steps: number
  sigma: number
  /** with `preview: true`: each image's H/8 x W/8 estimate as base64 RGB bytes */
  previews?: Array<{ width: number, height: number, rgb: string }>
}

/** A job's return value: the result's shape, and the key that holds its images. */
export interface FleetReturn { seed: number, width: number, height: number, images: number, result: string }

/** What the result key holds. */
export interface FleetResult {
  seed: number
  width: number
  height: number
  /** base64 PNGs (with the parameters chunk unless the job said `metadata: false`) */
  images: string[]
  /** with outputType 'latent': the latents as base64 float32, little-endian */
  latents?: string
  /** the run's notices about its prompts */
  warnings?: string[]
}

/** The job data for `generate(prompt, options)`; refuses what JSON cannot carry (latents, callbacks). */
export async function toJobData (prompt: string, options: GenerateOptions): Promise<FleetJobData> {
  if (options === null || typeof options !== 'object') throw new Pg25Error('PG25_INVALID_ARGUMENT', 'options must be an object')
  const { onStep, signal, preview, latents, image, mask, ...rest } = options
  if (latents !== undefined && latents !== null) throw new Pg25Error('PG25_INVALID_ARGUMENT', 'latents cannot be sent to a fleet; pass a seed instead')
  if (preview !== undefined && preview !== null && typeof preview !== 'boolean') throw new Pg25Error('PG25_INVALID_ARGUMENT', 'preview must be true or false')
  const data: FleetJobData = { ...rest, prompt }
  if (image !== undefined && image !== null) data.image = (await imageBytes(image)).toString('base64')
  if (mask !== undefined && mask !== null) data.mask = (await imageBytes(mask)).toString('base64')
  // The worker checks every value; the field names and JSON shape are checked here, before queueing.
  parseRequest(JSON.stringify(data))
  if (preview === true) data.preview = true
  return data
}

async function imageBytes (image: NonNullable<GenerateOptions['image']>): Promise<Buffer> {
  if (typeof image === 'string') return await readRegularFile(image, { what: 'image', code: 'PG25_INVALID_ARGUMENT', maxBytes: INPUT_IMAGE_BYTES })
  if (image instanceof Uint8Array) return Buffer.from(image.buffer, image.byteOffset, image.byteLength)
  const { width, height, data } = image as RGBImage
  const sizeOk = Number.isInteger(width) && Number.isInteger(height) && width >= 1 && height >= 1
  if (!sizeOk || !(data instanceof Uint8Array) || data.length !== width * height * 3) {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', 'image: raw images need integer width and height and width x height x 3 RGB bytes')
  }
  // Raw pixels travel as a lossless PNG: the worker decodes it back to the same bytes.
  return await sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width, height, channels: 3 } }).png().toBuffer()
}

/** The request in a job's data (an object or JSON text), checked as the server checks a body. */
export function readJobData (data: unknown): { request: ParsedRequest, preview: boolean } {
  let fields: unknown = data
  if (typeof data === 'string') {
    try {
      fields = JSON.parse(data)
    } catch {
      throw new Pg25Error('PG25_INVALID_ARGUMENT', 'the job data must be a JSON object')
    }
  }
  let preview = false
  if (fields !== null && typeof fields === 'object' && !Array.isArray(fields) && 'preview' in fields) {
    const { preview: p, ...rest } = fields as Record<string, unknown>
    if (p !== null && typeof p !== 'boolean') throw new Pg25Error('PG25_INVALID_ARGUMENT', '"preview" must be true or false')
    preview = p === true
    fields = rest
  }
  return { request: parseRequest(JSON.stringify(fields ?? null)), preview }
}

export function toProgress (s: StepInfo): FleetProgress {
  const p: FleetProgress = { step: s.step, steps: s.steps, sigma: s.sigma }
  if (s.previews !== undefined) p.previews = s.previews.map(v => ({ width: v.width, height: v.height, rgb: Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength).toString('base64') }))
  return p
}

/** The step a progress event reports, or null for a progress value that is not ours. */
export function fromProgress (p: unknown): StepInfo | null {
  if (p === null || typeof p !== 'object') return null
  const { step, steps, sigma, previews } = p as Partial<FleetProgress>
  if (!Number.isInteger(step) || !Number.isInteger(steps)) return null
  const info: StepInfo = { step: step!, steps: steps!, sigma: typeof sigma === 'number' ? sigma : NaN }
  if (Array.isArray(previews)) info.previews = previews.map(v => ({ width: v.width, height: v.height, data: new Uint8Array(Buffer.from(v.rgb, 'base64')) }))
  return info
}

export async function toResult (r: GenerateResult, metadata: boolean): Promise<FleetResult> {
  const pngs = await Promise.all(r.images.map(async img => await img.toPNG({ metadata })))
  const images = pngs.map(p => p.toString('base64'))
  const out: FleetResult = { seed: r.seed, width: r.width, height: r.height, images, warnings: r.warnings ?? [] }
  if (r.latents !== undefined) out.latents = Buffer.from(r.latents.buffer, r.latents.byteOffset, r.latents.byteLength).toString('base64')
  return out
}

/** The result as Pipeline.generate returns it: RGB bytes decoded from the PNGs, their parameters kept. */
export async function fromResult (r: FleetResult): Promise<GenerateResult> {
  const images = await Promise.all(r.images.map(async b64 => {
    const png = Buffer.from(b64, 'base64')
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true })
    if (info.channels !== 3) throw new Pg25Error('PG25_QUEUE', `a fleet result decoded to ${info.channels} channels, not RGB`)
    return makeImage(info.width, info.height, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), readPngText(png).parameters ?? '')
  }))
  const warnings = Array.isArray(r.warnings) ? r.warnings.filter((w): w is string => typeof w === 'string') : []
  const out: GenerateResult = { seed: r.seed, width: r.width, height: r.height, images, warnings }
  if (r.latents !== undefined) {
    const bytes = Buffer.from(r.latents, 'base64')
    out.latents = new Float32Array(bytes.length / 4)
    Buffer.from(out.latents.buffer).set(bytes)
  }
  return out
}

/** A failure as a job's failedReason: "CODE: message", so that clients get the code back. */
export function failureReason (err: unknown): string {
  const e = err instanceof Pg25Error ? err : new Pg25Error('PG25_INTERNAL', (err as Error)?.message ?? String(err))
  return `${e.code}: ${e.message}`
}

/** The error a failedReason stands for; BullMQ's own reasons (a job that stalled too often) are PG25_QUEUE. */
export function fromFailure (reason: string | undefined): Pg25Error {
  const m = /^(PG25_[A-Z_]+|ABORT_ERR): ([\s\S]*)$/.exec(reason ?? '')
  if (m === null) return new Pg25Error('PG25_QUEUE', `the fleet failed the job: ${reason ?? 'no reason given'}`)
  if (m[1] === 'ABORT_ERR') return new AbortError(m[2])
  return new Pg25Error(m[1] as Pg25ErrorCode, m[2])
}
