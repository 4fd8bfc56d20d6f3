import sharp from 'sharp'

/** One generated image: RGB bytes, row after row, 3 bytes per pixel. */
export interface GeneratedImage {
  width: number
  height: number
  data: Uint8Array
  /** PNG-encoded image (via sharp). */
  toPNG(): Promise<Buffer>
}

export function makeImage (width: number, height: number, data: Uint8Array): GeneratedImage {
  return {
    width,
    height,
    data,
    async toPNG () {
      return await sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width, height, channels: 3 } }).png().toBuffer()
    }
  }
}
