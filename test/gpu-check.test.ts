// The device script (npm run gpu:check) in its smoke mode on the CUDA emulation: every section runs (the
// golden stages, GPU against CPU, the timings in both layouts and without graphs, every op case in NHWC
// and NCHW), so the rare GPU session finds it working. The timings themselves mean nothing here.
import test from 'ava'
import { execFile } from 'node:child_process'
import path from 'node:path'
import { promisify } from 'node:util'

test('gpu-check runs every section end to end and prints a number for every field', async t => {
  const script = path.join(__dirname, '..', 'bench', 'gpu-check.js')
  const env = { ...process.env, PG25_CUDA_EMULATION: '1', PG25_GPU_CHECK_SMOKE: '1' }
  const { stdout } = await promisify(execFile)(process.execPath, [script], { env, timeout: 600_000, maxBuffer: 16 << 20 })
  t.notRegex(stdout, /FAIL/)
  const summary = stdout.split('\n').find(l => l.startsWith('gpu-check: '))
  t.truthy(summary, stdout)
  const fields = Object.fromEntries(summary!.slice('gpu-check: '.length).split(' ').map(kv => kv.split('=')))
  t.is(fields.golden, 'pass')
  for (const k of ['unet_step_ms', 'unet_no_graph_ms', 'unet_nchw_ms', 'vae_ms', 'vae_nchw_ms', 'text_ms', 'generate_s', 'peak_gib']) {
    t.true(Number.isFinite(Number(fields[k])) && Number(fields[k]) > 0, `${k}=${fields[k]}`)
  }
  t.regex(stdout, /UNet, synthetic weights, GPU vs CPU @256 +\S+ +pass/)
  // The per-op profile of a UNet step and a VAE decode.
  for (const op of ['conv2d', 'linear', 'attention', 'group_norm', 'layer_norm']) t.regex(stdout, new RegExp(`profile unet step: ${op} +[0-9.]+ ms +[1-9][0-9]* calls`), op)
  t.regex(stdout, /profile vae decode: conv2d +[0-9.]+ ms +[1-9][0-9]* calls/)
  // PyTorch's whole-model timings need diffusers (the device run carries it): named here, skipped or timed.
  t.true('torch_unet_ms' in fields && 'torch_vae_ms' in fields, summary)
  t.regex(stdout, /pytorch (whole-model timings +skipped|unet_step \(diffusers, eager\) +[0-9.]+ ms)/)
  // Each convolution four ways (cuDNN and im2col, NHWC and NCHW), each GroupNorm in both layouts.
  for (const name of ['conv3x3 640ch 64x64 b2 +bias+residual', 'conv3x3 640ch 64x64 b2 +bias+residual nchw', 'conv3x3 640ch 64x64 b2 +bias+residual im2col',
    'conv3x3 640ch 64x64 b2 +bias+residual im2col nchw', 'group_norm vae 1x128x1024x1024 g32', 'group_norm vae 1x128x1024x1024 g32 nchw', 'sdpa vae 16384 tokens d512']) {
    t.regex(stdout, new RegExp(`op ${name.replace(/[+.]/g, c => `\\${c}`)} +[0-9.]+ ms`), name)
  }
})
