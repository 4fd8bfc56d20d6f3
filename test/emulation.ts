// Shared by the CUDA-emulation tests: importing this module selects the emulation build of the addon
// (PG25_CUDA_EMULATION=1, built by `npm run build:emu`), whose 'cuda' device runs our CUDA backend —
// kernels, cudart and cuBLASLt calls — on the CPU. Ava runs each test file in its own process.
import { loadNative } from '../lib/native'

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
