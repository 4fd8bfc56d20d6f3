// The peer comparison's work items and the peers' recorded times: for each, the fastest median the peer
// showed in three measurements on the development machine (AMD EPYC, 2 vCPUs, AVX-512 + AVX512-BF16),
// 2 threads each, median of 3 after a warm-up (the tiny UNet median of 10), torch 2.13.0+cpu, diffusers
// 0.36.0 and onnxruntime 1.30.0: the quiet-window run of issue 16 and two runs of `npm run bench:peers`.
// How they were run: BENCHMARKS.md, "CPU backend vs PyTorch and ONNX Runtime". `npm run bench:peers`
// measures them again when PG25_PEERS_PYTHON names the peers' Python.

export type WorkItem = 'unet32' | 'unet64' | 'vae' | 'pipeline' | 'tinyunet'

export interface PeerRow {
  item: WorkItem
  what: string
  /** milliseconds */
  pytorch: number
  onnxruntime?: number
  /** the target ratio ours / peer, per peer */
  target: { pytorch: number, onnxruntime?: number }
  /**
   * Items also run at half precision: PyTorch's bfloat16 model, ms, and its process's peak RSS in bytes, as
   * measured on 2026-12-07 (one run of `bench:peers`, BENCHMARKS.md "CPU bf16").
   */
  bf16?: { pytorch: number, pytorchRss: number }
}

export const PEER_ROWS: PeerRow[] = [
  { item: 'unet32', what: 'full-size UNet, batch 2, 32x32 latents', pytorch: 6390, target: { pytorch: 1 }, bf16: { pytorch: 2455, pytorchRss: 10659729408 } },
  { item: 'unet64', what: 'full-size UNet, batch 2, 64x64 latents', pytorch: 15620, target: { pytorch: 1 }, bf16: { pytorch: 6812, pytorchRss: 10659893248 } },
  { item: 'vae', what: 'full-size VAE decode to 256x256', pytorch: 2090, target: { pytorch: 1 }, bf16: { pytorch: 1619, pytorchRss: 805507072 } },
  { item: 'pipeline', what: 'tiny-pg25 generate(), 128x128, 30 steps', pytorch: 413, target: { pytorch: 1 }, bf16: { pytorch: 1300, pytorchRss: 480415744 } },
  { item: 'tinyunet', what: 'tiny-pg25 UNet call, batch 2, 16x16', pytorch: 12.4, onnxruntime: 3.9, target: { pytorch: 1, onnxruntime: 1.5 } }
]

/** "12.3 s" or "45.6 ms" */
export function fmtMs (ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`
}

/** One table row: our time beside a peer's, the ratio and whether the target is met. */
export function ratioCell (ours: number, peer: number | undefined, target: number | undefined): string {
  if (peer === undefined || target === undefined) return '–'
  const r = ours / peer
  return `${r.toFixed(2)} (${r <= target ? 'met' : 'not met'}, target ≤ ${target})`
}
