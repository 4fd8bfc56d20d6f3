// Where the CLI writes its images. Checked before any model is loaded (a bad -o must not cost a whole
// generation), written to a temporary file in the same folder and renamed over the target, so a full
// disk or a crash never leaves a truncated image where a good one was. The extension picks the format.
import { constants, promises as fs } from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import sharp from 'sharp'
import { Pg25Error } from './errors'
import type { GeneratedImage } from './image'

export type ImageFormat = 'png' | 'jpeg' | 'webp'

const EXTENSIONS: Record<string, ImageFormat> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' }

/** Whether the first bytes of a file are those of a PNG, JPEG or WebP image (what -o may replace). */
function isImage (head: Buffer): boolean {
  const png = head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
  const jpeg = head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff
  const webp = head.toString('latin1', 0, 4) === 'RIFF' && head.toString('latin1', 8, 12) === 'WEBP'
  return png || jpeg || webp
}

const refuse = (file: string, why: string): never => { throw new Pg25Error('PG25_INVALID_ARGUMENT', `-o ${file}: ${why}`) }

/** The format `file`'s extension names (.png, .jpg/.jpeg, .webp, any case); anything else is refused, naming it. */
export function formatOf (file: string): ImageFormat {
  const ext = path.extname(file)
  const format = EXTENSIONS[ext.toLowerCase()]
  if (format === undefined) refuse(file, `${ext === '' ? 'has no extension' : `the extension ${JSON.stringify(ext)} is not a format written here`}: use .png, .jpg, .jpeg or .webp`)
  return format
}

/**
 * The image's bytes in `format`, with the generation parameters: in a `parameters` text chunk for
 * PNG; for JPEG and WebP (quality 92) in the EXIF UserComment, where A1111 puts them (libvips writes
 * it as ASCII, so characters outside it are approximated there).
 */
export async function encodeImage (image: GeneratedImage, format: ImageFormat): Promise<Buffer> {
  if (format === 'png') return await image.toPNG()
  const pixels = Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength)
  const raw = sharp(pixels, { raw: { width: image.width, height: image.height, channels: 3 } })
  return await (format === 'jpeg' ? raw.jpeg({ quality: 92 }) : raw.webp({ quality: 92 })).withExif({ IFD2: { UserComment: image.parameters } }).toBuffer()
}

/** The files `--count n` writes: `file` first, then `name-2.ext`, `name-3.ext`, ... beside it. */
export function numberedPaths (file: string, n: number): string[] {
  const ext = path.extname(file)
  const stem = file.slice(0, file.length - ext.length)
  return Array.from({ length: n }, (_, i) => i === 0 ? file : `${stem}-${i + 1}${ext}`)
}

export interface OutputFile {
  /** Writes `bytes` to the temporary file and renames it over the target. */
  commit(bytes: Buffer): Promise<void>
  /** Removes the temporary file (after a failure). */
  discard(): Promise<void>
}

/**
 * Checks that `file` can be written: its folder exists and is writable, and the file is absent or an
 * existing PNG, JPEG or WebP image (which is replaced). Anything else that exists there (another kind
 * of file, a folder, a device such as /dev/full) is refused, so no file is lost to a mistyped -o.
 */
export async function openOutput (file: string): Promise<OutputFile> {
  let existing
  try {
    existing = await fs.lstat(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') refuse(file, (err as Error).message)
  }
  if (existing !== undefined) {
    if (existing.isDirectory()) refuse(file, 'is a directory')
    if (!existing.isFile()) refuse(file, 'exists and is not a regular file')
    const head = Buffer.alloc(12)
    const fh = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK)
    try {
      await fh.read(head, 0, 12, 0)
    } finally {
      await fh.close()
    }
    if (!isImage(head)) refuse(file, 'exists and is not a PNG, JPEG or WebP image; refusing to replace it (remove it or choose another name)')
  }
  const dir = path.dirname(file)
  // A short name of its own, not the target's plus a suffix: a target name near the 255-byte limit must still work.
  const tmp = path.join(dir, `.pg25-${process.pid}-${randomBytes(4).toString('hex')}.tmp`)
  let fh: fs.FileHandle
  try {
    fh = await fs.open(tmp, 'wx')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return refuse(file, code === 'ENOENT' || code === 'ENOTDIR' ? `the folder ${dir} does not exist` : `cannot write in ${dir} (${(err as Error).message})`)
  }
  let open = true
  const close = async (): Promise<void> => { if (open) { open = false; await fh.close() } }
  const discard = async (): Promise<void> => {
    await close().catch(() => {})
    await fs.rm(tmp, { force: true })
  }
  return {
    discard,
    async commit (bytes) {
      try {
        await fh.writeFile(bytes)
        await fh.sync()
        await close()
        await fs.rename(tmp, file)
      } catch (err) {
        await discard()
        throw new Pg25Error('PG25_INTERNAL', `-o ${file}: writing failed (${(err as Error).message}); the file was left as it was`)
      }
    }
  }
}
