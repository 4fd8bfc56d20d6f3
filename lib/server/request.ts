// The JSON body of POST /generate: checked field by field, turned into generate() options, and sized
// (output pixels) before it may take a place in the queue.
import { Pg25Error } from '../errors'
import { INPUT_IMAGE_BYTES, probeImage } from '../image'
import { show, unknownHint } from '../options'
import type { GenerateOptions, Size } from '../pipeline'

/** The JSON body of POST /generate: `prompt` plus any generate() option that JSON can carry. */
export interface GenerateRequest extends Omit<GenerateOptions, 'onStep' | 'signal' | 'latents' | 'image' | 'mask'> {
  prompt: string
  /** base64 PNG/JPEG for image-to-image */
  image?: string
  /** base64 PNG/JPEG inpainting mask (white = repaint), with `image` */
  mask?: string
  /** { name: scale } for LoRAs the operator loaded (loadLoRA / --lora); names only, never files */
  loras?: Record<string, number>
  /** 'png' (default: the first image as image/png) or 'json' (every image, base64, with the seed) */
  response?: 'png' | 'json'
  /** false leaves the parameters chunk out of the PNGs */
  metadata?: boolean
}

export interface ParsedRequest {
  prompt: string
  options: GenerateOptions
  response: 'png' | 'json'
  metadata: boolean
}

const ALLOWED = new Set(['prompt', 'negativePrompt', 'prompt2', 'negativePrompt2', 'width', 'height', 'steps', 'guidanceScale', 'scheduler',
  'seed', 'count', 'strength', 'image', 'mask', 'loras', 'outputType', 'originalSize', 'cropTopLeft', 'targetSize', 'response', 'metadata',
  'promptStyle'])

/** Base64 images longer than this (64 MiB decoded, as image files fed to a fleet) are refused unread. */
export const MAX_BASE64_CHARS = Math.ceil(INPUT_IMAGE_BYTES / 3) * 4

const ALPHABET = new Uint8Array(128)
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/') ALPHABET[c.charCodeAt(0)] = 1

/**
 * Standard base64 in whole quads (Buffer.from would quietly skip anything else), checked in one pass:
 * a regular expression over megabytes of text overflows its backtracking stack.
 */
export function isBase64 (v: string): boolean {
  if (v.length % 4 !== 0) return false
  const pad = v.endsWith('==') ? 2 : v.endsWith('=') ? 1 : 0
  for (let i = 0; i < v.length - pad; i++) {
    const c = v.charCodeAt(i)
    if (c >= 128 || ALPHABET[c] === 0) return false
  }
  return true
}

const bad = (msg: string): never => { throw new Pg25Error('PG25_INVALID_ARGUMENT', msg) }

/** Parses and checks a body; null for a field means its default, as in generate(). */
export function parseRequest (text: string): ParsedRequest {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    bad('the body must be JSON')
  }
  return parseFields(body)
}

/**
 * Checks a body's fields (POST /generate's, or what the OpenAI and A1111 routes make of theirs) and
 * turns them into generate() options. An unknown field is refused with our name for it when it is
 * another library's (`"num_inference_steps": this library calls it "steps"`).
 */
export function parseFields (body: unknown): ParsedRequest {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) bad('the body must be a JSON object')
  const present = Object.entries(body as Record<string, unknown>).filter(([, v]) => v !== null)
  const fields = Object.fromEntries(present) as Partial<GenerateRequest>
  for (const k of Object.keys(fields)) if (!ALLOWED.has(k)) bad(`unknown field ${show(k)}${unknownHint(k, [...ALLOWED])}`)
  const { prompt, response = 'png', image, mask, metadata = true, ...opts } = fields
  if (typeof prompt !== 'string') bad(`"prompt" must be a string, got ${show(prompt)}`)
  if (response !== 'png' && response !== 'json') bad(`"response" must be "png" or "json", got ${show(response)}`)
  if (typeof metadata !== 'boolean') bad(`"metadata" must be true or false, got ${show(metadata)}`)
  return { prompt: prompt!, options: { ...opts, image: decodeImage('image', image), mask: decodeImage('mask', mask) }, response, metadata }
}

/** A base64 image field's bytes (undefined when absent). */
export function decodeImage (name: string, v: unknown): Buffer | undefined {
  if (v === undefined) return undefined
  if (typeof v === 'string' && v.length > MAX_BASE64_CHARS) {
    const limit = `${INPUT_IMAGE_BYTES} bytes (${MAX_BASE64_CHARS} characters)`
    bad(`"${name}" is ${v.length} base64 characters; images up to ${limit} are accepted`)
  }
  if (typeof v !== 'string' || v === '' || !isBase64(v)) bad(`"${name}" must be a non-empty base64 (standard alphabet) PNG, JPEG or WebP`)
  return Buffer.from(v as string, 'base64')
}

/**
 * Output pixels the request asks for (width x height x count), the size read from an input image's
 * header when it has no width and height; null when the fields are malformed (generate() says how).
 */
export async function requestPixels (o: GenerateOptions, defaultSize: Size): Promise<number | null> {
  let size: Size | null = null
  if (o.image !== undefined && (o.width === undefined || o.height === undefined)) {
    const probed = await probeImage(o.image)
    size = { width: Math.floor(probed.width / 8) * 8, height: Math.floor(probed.height / 8) * 8 }
  }
  const width = o.width ?? size?.width ?? defaultSize.width
  const height = o.height ?? size?.height ?? defaultSize.height
  const count = o.count ?? 1
  if (![width, height, count].every(v => typeof v === 'number' && Number.isFinite(v) && v > 0)) return null
  return width * height * count
}
