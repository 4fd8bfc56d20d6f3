// Shared by the CUDA-emulation tests: importing this module selects the emulation build of the addon
// (PG25_CUDA_EMULATION=1, built by `npm run build:emu`), whose 'cuda' device runs our CUDA backend —
// kernels, cudart and cuBLASLt calls — on the CPU. Ava runs each test file in its own process.
import { type Runtime, TorchGenerator } from '../../lib'
import { loadNative, type NativeTensor } from '../../lib/native'
import { maxAbsDiff, relativeError } from './helpers'

process.env.PG25_CUDA_EMULATION = '1'

export interface EmulationReport {
  misuse: string[]
  misuseCount: number
  liveAllocations: number
  liveBytes: number
  peakBytes: number
  queued: number
  launches: number
  matmuls: number
  poolTrims: number
  hostToDeviceBytes: number
  deviceToDeviceBytes: number
  hostWaits: number
  minMatmulAlignment: number
}

/** What the emulation caught since the last reset (misuse of CUDA, queued work, device memory). */
export function emulationReport (reset = false): EmulationReport {
  return (loadNative() as any).emulationReport(reset)
}

/** Rounds to the nearest float16 value (ties to even), so both backends see identical inputs. */
export function toHalf (v: number): number {
  if (!Number.isFinite(v) || v === 0) return v
  const a = Math.abs(v)
  if (a >= 65520) return Math.sign(v) * Infinity
  let e = Math.max(-14, Math.floor(Math.log2(a)))
  if (e > -14 && 2 ** e > a) e--
  if (2 ** (e + 1) <= a) e++
  const ulp = 2 ** (e - 10)
  const q = a / ulp
  const f = Math.floor(q)
  const d = q - f
  const r = d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f
  return Math.sign(v) * r * ulp
}

/** Peak signal-to-noise ratio of two 8-bit images, in dB. */
export function psnr (a: ArrayLike<number>, b: ArrayLike<number>): number {
  let se = 0
  for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2
  const mse = se / a.length
  return mse === 0 ? Infinity : 10 * Math.log10(255 * 255 / mse)
}

/** An op of Engine.op with random inputs: each [shape, scale], or null for an absent optional input. */
export interface OpCase { op: string, inputs: Array<[number[], number] | null>, attrs?: Record<string, unknown>, tol?: number }

/** Random values rounded to float16 from consecutive seeds, `first` on: both backends see identical inputs. */
export function halfData (first: number): (shape: number[], scale?: number) => Float32Array {
  let seed = first
  return (shape, scale = 1) => new TorchGenerator(seed++).randn(shape).map(v => toHalf(v * scale))
}

/**
 * Runs `c` on `ref` (the CPU backend) and on `dev` with the same inputs, `prepare` applied to dev's (to
 * NHWC, say), and asserts the relative error (absolute where the reference is all below float16's range) is within
 * c.tol, 2e-3 by default: float16 storage of inputs and outputs, float32 arithmetic.
 */
export async function compareOp (t: any, c: OpCase, ref: Runtime, dev: Runtime, data: (shape: number[], scale?: number) => Float32Array,
  prepare: (x: NativeTensor) => Promise<NativeTensor> = async x => x): Promise<void> {
  const hosts = c.inputs.map(i => i === null ? null : { shape: i[0], data: data(i[0], i[1]) })
  const run = async (rt: Runtime, inputs: (x: NativeTensor) => Promise<NativeTensor>): Promise<Float32Array> => {
    const ts = await Promise.all(hosts.map(async h => h === null ? null : await inputs(rt.fromHost(h.data, h.shape))))
    const y = await rt.engine.op(c.op, ts, c.attrs ?? {})
    const out = rt.toHost(y) // NCHW order whatever the layout
    for (const x of [...ts, y]) x?.dispose()
    return out
  }
  const want = await run(ref, async x => x)
  const got = await run(dev, prepare)
  // A reference below float16's smallest subnormal (2^-24) is stored as 0 or ±2^-24: absolute error there.
  const err = want.every(v => Math.abs(v) < 2 ** -24) ? maxAbsDiff(got, want) : relativeError(got, want)
  t.true(err <= (c.tol ?? 2e-3), `${c.op} ${JSON.stringify(c.inputs.map(i => i?.[0]))} ${JSON.stringify(c.attrs ?? {})}: relative error ${err}`)
}
