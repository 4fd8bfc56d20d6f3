// What both phases of gpu-check share: the mode (device, smoke), the rows they print, the engines'
// notices, timing, and the model configs the full-size checks build from.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { FULL, TINY } from '../../test/support/helpers'

export const DEVICE = (process.env.PG25_GPU_CHECK_DEVICE ?? 'cuda') as 'cuda' | 'cpu'
export const SMOKE = process.env.PG25_GPU_CHECK_SMOKE === '1'
export const MODEL = SMOKE ? TINY : FULL
export const RES = SMOKE ? 128 : 1024 // image side of the timings
const S = SMOKE ? 16 : 1
export const px = (n: number): number => Math.max(1, n / S) // an op case's image side
export const opRows = (n: number): number => Math.max(8, Math.ceil(n / (S * S))) // an op case's tokens or GEMM rows
export const reps = (n: number): number => (SMOKE ? 1 : n)

export function row (name: string, value: string, verdict = ''): void {
  console.log(`${name.padEnd(50)} ${value.padEnd(14)} ${verdict}`.trimEnd())
}
// The engines' notices (a missing library, a CUDA graph that could not be recorded), each printed once.
const noticed = new Set<string>()
export function notice (msg: string): void {
  if (!noticed.has(msg)) { noticed.add(msg); row('notice', '', msg) }
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

// Each native job resolves once its GPU work has completed (it waits on an event off the main
// thread), so the time to an awaited result is the time of the work (a worker-thread hop, ~30 µs,
// is noise beside a model call).
// Two untimed calls first: a UNet call at a new size runs eagerly, then records its CUDA graph.
export async function timeMs (fn: () => Promise<unknown>, n: number): Promise<number> {
  await fn()
  await fn()
  const times: number[] = []
  for (let i = 0; i < n; i++) { const t0 = performance.now(); await fn(); times.push(performance.now() - t0) }
  return median(times)
}

/** A component of the timed model (the real configs, or the tiny model's in the smoke mode), weights to come from a seed. */
export function cfg (n: string): any {
  const index = JSON.parse(readFileSync(path.join(MODEL, 'model_index.json'), 'utf8'))
  return { className: index[n][1], configPath: path.join(MODEL, n, 'config.json'), configText: readFileSync(path.join(MODEL, n, 'config.json'), 'utf8'), name: n, files: [], variant: null }
}

export const timeIds = (side: number): Float32Array => Float32Array.from([side, side, 0, 0, side, side, side, side, 0, 0, side, side])

export const fmt = (x: number | undefined, d = 1): string => (x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(d))
