// Shared test helpers: where the reference data lives, a small safetensors reader for golden files
// (independent of the native loader under test), and error metrics.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import type { Runtime, UNetModel } from '../../lib'
import { crc32, deflateSync } from 'node:zlib'

export const REF = path.resolve(process.env.PG25_REFERENCE ?? path.join(__dirname, '..', '..', '..', '..', 'shared', 'reference'))
export const TINY = path.join(REF, 'tiny-pg25')
export const GOLDEN = path.join(REF, 'golden')
export const FULL = path.join(REF, 'full')

export interface HostTensor { shape: number[], data: Float32Array }

/** Reads every F32 tensor of a golden safetensors file. */
export function readGolden (file: string): Record<string, HostTensor> {
  const buf = readFileSync(path.isAbsolute(file) ? file : path.join(GOLDEN, file))
  const n = Number(buf.readBigUInt64LE(0))
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string, shape: number[], data_offsets: [number, number] }>
  const out: Record<string, HostTensor> = {}
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue
    if (e.dtype !== 'F32') throw new Error(`${file}: ${name} is ${e.dtype}`)
    const start = 8 + n + e.data_offsets[0]
    const bytes = buf.subarray(start, 8 + n + e.data_offsets[1])
    const data = new Float32Array(bytes.byteLength / 4)
    for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(i * 4)
    out[name] = { shape: e.shape, data }
  }
  return out
}

export function goldenCases (): any {
  return JSON.parse(readFileSync(path.join(GOLDEN, 'cases.json'), 'utf8'))
}

/** ||a - b|| / ||b|| */
export function relativeError (a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`)
  let num = 0
  let den = 0
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i]
    if (Number.isNaN(d)) return Infinity
    num += d * d
    den += b[i] * b[i]
  }
  return Math.sqrt(num) / Math.sqrt(den)
}

export function maxAbsDiff (a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

/** A PNG that declares width x height in its header, with one row of pixel data: nothing to decode cheaply. */
export function declaredPng (width: number, height: number): Buffer {
  const chunk = (type: string, body: Buffer): Buffer => {
    const len = Buffer.alloc(4)
    len.writeUInt32BE(body.length)
    const crc = Buffer.alloc(4)
    crc.writeUInt32BE(crc32(Buffer.concat([Buffer.from(type, 'latin1'), body])) >>> 0)
    return Buffer.concat([len, Buffer.from(type, 'latin1'), body, crc])
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr.set([8, 2, 0, 0, 0], 8)
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(1 + width * 3))), chunk('IEND', Buffer.alloc(0))])
}

/** The golden UNet call (unet.safetensors, batch 2) on `rt`: our output's shape, the reference's, and the relative error. */
export async function goldenUnet (rt: Runtime, unet: UNetModel): Promise<{ shape: number[], expected: number[], err: number }> {
  const g = readGolden('unet.safetensors')
  const out = await unet.predict(rt.fromHost(g.sample.data, g.sample.shape), g.timestep.data[0],
    rt.fromHost(g.encoder_hidden_states.data, g.encoder_hidden_states.shape),
    rt.fromHost(g.text_embeds.data, g.text_embeds.shape), g.time_ids.data)
  return { shape: out.shape, expected: g.out.shape, err: relativeError(rt.toHost(out), g.out.data) }
}
