// Images in and out: decoding img2img inputs (PNG/JPEG buffers, paths, raw RGB) and PNG output with
// the generation parameters in a `parameters` text chunk, as A1111 and ComfyUI users read them.
import { crc32 } from 'node:zlib'
import type SharpModule from 'sharp'
import { Pg25Error } from './errors'
import { readRegularFile } from './io/regular-file'

// sharp (libvips, tens of milliseconds to load) is loaded by the first image handled, not with the package.
let sharpModule: typeof SharpModule | undefined
function sharp (...args: Parameters<typeof SharpModule>): SharpModule.Sharp {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use: the root import stays lean
  sharpModule ??= require('sharp') as typeof SharpModule
  return sharpModule(...args)
}

/** The largest image side accepted, in and out. */
export const MAX_SIDE = 8192
/** Encoded input images larger than this are refused unread. */
const MAX_INPUT_BYTES = 256 * 2 ** 20
/** Encoded images that travel in JSON (base64 in a request or a fleet job) are at most this. */
export const INPUT_IMAGE_BYTES = 64 * 2 ** 20
/** Formats image-to-image reads; vector formats are refused (their size is whatever they declare). */
const INPUT_FORMATS = new Set(['png', 'jpeg', 'webp'])

/** Raw RGB pixels: 3 bytes per pixel, row after row. */
export interface RGBImage {
  width: number
  height: number
  data: Uint8Array
}

/** One generated image. */
export interface GeneratedImage extends RGBImage {
  /**
   * PNG bytes (via sharp). By default they carry the generation parameters in a `parameters` text
   * chunk (A1111 style); `{ metadata: false }` leaves it out.
   *
   * ```ts
   * await fs.writeFile('out.png', await r.images[0].toPNG())
   * ```
   */
  toPNG(options?: { metadata?: boolean }): Promise<Buffer>
  /** The A1111-style parameters text written into the PNG. */
  readonly parameters: string
}

/** What an image input may be: encoded bytes (PNG, JPEG, WebP...), a file path, or raw RGB pixels. */
export type ImageInput = Buffer | Uint8Array | string | RGBImage

function isRGB (x: unknown): x is RGBImage {
  return typeof x === 'object' && x !== null && 'data' in x && 'width' in x && 'height' in x && !(x instanceof Uint8Array)
}

function checkRGB ({ width, height, data }: RGBImage, what: string): void {
  const sizeOk = Number.isInteger(width) && Number.isInteger(height) && width >= 1 && height >= 1
  if (!sizeOk || !(data instanceof Uint8Array) || data.length !== width * height * 3) {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `${what}: raw images need integer width and height and width x height x 3 RGB bytes`)
  }
}

/** An image input read and checked from its header alone: its declared size and what to decode. */
interface ProbedImage { input: Uint8Array | RGBImage, width: number, height: number }

/**
 * Reads an image input's declared size without decoding it (a path is read as a regular file), and
 * refuses one over MAX_SIDE on either side, or in a format other than PNG, JPEG or WebP, before a
 * pixel is allocated: a 31 KB PNG can declare 16000 x 16000.
 */
export async function probeImage (input: ImageInput, what = 'image'): Promise<ProbedImage> {
  const bad = (msg: string): never => { throw new Pg25Error('PG25_INVALID_ARGUMENT', `${what}: ${msg}`) }
  let width: number
  let height: number
  if (isRGB(input)) {
    checkRGB(input, what);
    ({ width, height } = input)
  } else {
    if (typeof input === 'string') input = await readRegularFile(input, { what, code: 'PG25_INVALID_ARGUMENT', maxBytes: MAX_INPUT_BYTES })
    if (!(input instanceof Uint8Array)) return bad('must be a Buffer, a file path or { width, height, data }')
    if (input.length === 0) bad('is empty')
    let meta: SharpModule.Metadata
    try {
      meta = await sharp(input).metadata()
    } catch (err) {
      return bad(`cannot decode (${(err as Error).message})`)
    }
    if (!INPUT_FORMATS.has(meta.format ?? '')) bad(`format ${JSON.stringify(meta.format)} is not supported (PNG, JPEG or WebP)`)
    width = meta.width ?? 0
    height = meta.height ?? 0
  }
  if (width > MAX_SIDE || height > MAX_SIDE) bad(`is ${width}x${height}; images up to ${MAX_SIDE}x${MAX_SIDE} are accepted`)
  return { input, width, height }
}

/** Decodes an image input to RGB, resized (Lanczos) to `size` when given. */
export async function loadImage (input: ImageInput, size?: { width: number, height: number }, what = 'image'): Promise<RGBImage> {
  let img: SharpModule.Sharp
  if (isRGB(input)) {
    checkRGB(input, what)
    const { width, height, data } = input
    if (!size || (size.width === width && size.height === height)) return { width, height, data }
    img = sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width, height, channels: 3 } })
  } else if (typeof input === 'string' || input instanceof Uint8Array) {
    const bytes = typeof input === 'string' ? await readRegularFile(input, { what, code: 'PG25_INVALID_ARGUMENT', maxBytes: MAX_INPUT_BYTES }) : input
    try {
      // sharp's own pixel limit as a second guard behind probeImage
      img = sharp(bytes, { limitInputPixels: MAX_SIDE * MAX_SIDE })
    } catch (err) {
      throw new Pg25Error('PG25_INVALID_ARGUMENT', `${what}: cannot decode (${(err as Error).message})`)
    }
  } else {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `${what} must be a Buffer, a file path or { width, height, data }`)
  }
  try {
    if (size) img = img.resize(size.width, size.height, { fit: 'fill', kernel: 'lanczos3' })
    const { data, info } = await img.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true })
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`)
    return { width: info.width, height: info.height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) }
  } catch (err) {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `${what}: cannot decode (${(err as Error).message})`)
  }
}

function chunk (type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8)
  head.writeUInt32BE(body.length, 0)
  head.write(type, 4, 'latin1')
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])) >>> 0)
  return Buffer.concat([head, body, crc])
}

/** Inserts a text chunk after IHDR: tEXt when the text is Latin-1, else UTF-8 iTXt. */
export function addPngText (png: Buffer, keyword: string, text: string): Buffer {
  const latin1 = [...text].every(ch => ch.codePointAt(0)! <= 0xff)
  const body = latin1 ?
      Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]) :
      Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')])
  const ihdrEnd = 8 + 8 + png.readUInt32BE(8) + 4
  return Buffer.concat([png.subarray(0, ihdrEnd), chunk(latin1 ? 'tEXt' : 'iTXt', body), png.subarray(ihdrEnd)])
}

/** Reads the text chunks (tEXt and uncompressed iTXt) of a PNG. */
export function readPngText (png: Buffer): Record<string, string> {
  const out: Record<string, string> = {}
  let at = 8
  while (at + 8 <= png.length) {
    const len = png.readUInt32BE(at)
    const type = png.toString('latin1', at + 4, at + 8)
    const body = png.subarray(at + 8, at + 8 + len)
    const nul = body.indexOf(0)
    if (type === 'tEXt' && nul > 0) out[body.toString('latin1', 0, nul)] = body.toString('latin1', nul + 1)
    if (type === 'iTXt' && nul > 0 && body[nul + 1] === 0) {
      const lang = body.indexOf(0, nul + 3)
      const trans = body.indexOf(0, lang + 1)
      out[body.toString('latin1', 0, nul)] = body.toString('utf8', trans + 1)
    }
    at += 12 + len
  }
  return out
}

export function makeImage (width: number, height: number, data: Uint8Array, parameters: string): GeneratedImage {
  return {
    width,
    height,
    data,
    parameters,
    async toPNG (options = {}) {
      const pixels = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      const png = await sharp(pixels, { raw: { width, height, channels: 3 } }).png().toBuffer()
      return options.metadata === false ? png : addPngText(png, 'parameters', parameters)
    }
  }
}
