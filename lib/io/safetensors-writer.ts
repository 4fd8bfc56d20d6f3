// Writes safetensors files from TypeScript: test and benchmark fixtures (seed-made weights,
// Paddle-format copies, hand-broken files).
import { promises as fs } from 'node:fs'

export type WriteDType = 'F32' | 'F16' | 'BF16'

export interface TensorToWrite {
  name: string
  dtype: WriteDType
  shape: number[]
  data: Float32Array
}

const f32 = new Float32Array(1)
const u32 = new Uint32Array(f32.buffer)

/** float32 -> IEEE half bits, round to nearest even. */
export function toHalfBits (value: number): number {
  f32[0] = value
  const x = u32[0]
  const sign = (x >>> 16) & 0x8000
  const exp = ((x >>> 23) & 0xff) - 127 + 15
  let mant = x & 0x7fffff
  if (((x >>> 23) & 0xff) === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0)
  if (exp >= 31) return sign | 0x7c00
  if (exp <= 0) {
    if (exp < -10) return sign
    mant |= 0x800000
    const shift = 14 - exp
    let half = mant >>> shift
    const rem = mant & ((1 << shift) - 1)
    const mid = 1 << (shift - 1)
    if (rem > mid || (rem === mid && (half & 1) !== 0)) half++
    return sign | half
  }
  let half = sign | (exp << 10) | (mant >>> 13)
  const rem = mant & 0x1fff
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1) !== 0)) half++
  return half
}

/** float32 -> bfloat16 bits, round to nearest even. */
export function toBFloat16Bits (value: number): number {
  f32[0] = value
  const x = u32[0]
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return (x >>> 16) | 0x40
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff
}

function encode (t: TensorToWrite): Buffer {
  const n = t.data.length
  if (t.dtype === 'F32') return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)
  const out = Buffer.alloc(n * 2)
  const conv = t.dtype === 'F16' ? toHalfBits : toBFloat16Bits
  for (let i = 0; i < n; i++) out.writeUInt16LE(conv(t.data[i]), i * 2)
  return out
}

/** The bytes of a safetensors file holding `tensors` (in the given order). */
export function serializeSafetensors (tensors: TensorToWrite[], metadata: Record<string, string> = { format: 'pt' }): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata }
  const bodies: Buffer[] = []
  let offset = 0
  for (const t of tensors) {
    const expected = t.shape.reduce((a, b) => a * b, 1)
    if (expected !== t.data.length) throw new Error(`${t.name}: shape [${t.shape.join(', ')}] needs ${expected} values, got ${t.data.length}`)
    const body = encode(t)
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + body.length] }
    bodies.push(body)
    offset += body.length
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - (json.length % 8)) % 8) // align the data section to 8 bytes
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)))
  return Buffer.concat([len, Buffer.from(json, 'utf8'), ...bodies])
}

export async function writeSafetensors (file: string, tensors: TensorToWrite[], metadata?: Record<string, string>): Promise<void> {
  await fs.writeFile(file, serializeSafetensors(tensors, metadata))
}
