// The GPU check rehearsed as a device call would run it (scripts/device-view.sh: the tracked and
// untracked-not-ignored files plus the carried paths, no node_modules, no ../shared), with a PATH that
// holds bash, coreutils and python3 only (no node, no compilers, no xz or tar), on the CUDA emulation in
// its smoke mode: both phases end to end, each summary inside the last 12,000 characters the device
// tool returns. Also: a view without the packed modules or reference data fails, naming what is missing.
import test from 'ava'
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const ROOT = path.join(__dirname, '..', '..', '..')
const TAIL = 12_000 // characters of output the device tool returns
const work = mkdtempSync(path.join(os.tmpdir(), 'pg25-rehearsal-'))
const view = path.join(work, 'view')
const addon = { PG25_GPU_CHECK_ADDON: 'build-emu/Release' }
test.after.always(() => rmSync(work, { recursive: true, force: true }))

/** bash, the coreutils the scripts use, and python3: what the device image is assumed to have. */
function devicePath (): string {
  const bin = path.join(work, 'bin')
  mkdirSync(bin, { recursive: true })
  const tools = ['bash', 'sh', 'env', 'cat', 'ls', 'mkdir', 'rm', 'cp', 'mv', 'tr', 'tee', 'dirname', 'basename', 'head', 'tail', 'sed', 'grep', 'chmod', 'date', 'sort', 'uname']
  for (const tool of tools) {
    const where = spawnSync('bash', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim()
    if (where !== '' && !existsSync(path.join(bin, tool))) symlinkSync(where, path.join(bin, tool))
  }
  const python = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim()
  if (!existsSync(path.join(bin, 'python3'))) symlinkSync(python, path.join(bin, 'python3'))
  return bin
}

/** `gpu-check.sh run N` in `dir` as the device would run it; stdout and stderr together, as the device tool returns them. */
function runPhase (dir: string, phase: number, tag: string): { status: number | null, output: string, out: string } {
  const out = path.join(work, `out-${tag}`)
  mkdirSync(out, { recursive: true })
  const env: Record<string, string> = {
    PATH: devicePath(), HOME: work, OUT: out, PG25_GPU_CHECK_TMP: path.join(work, `tmp-${tag}`),
    PG25_CUDA_EMULATION: '1', PG25_GPU_CHECK_SMOKE: '1', PG25_THREADS: '2'
  }
  const r = spawnSync('bash', ['-c', `bash scripts/gpu-check.sh run ${phase} 2>&1`], { cwd: dir, env, encoding: 'utf8', timeout: 540_000, maxBuffer: 64 << 20 })
  return { status: r.status, output: r.stdout, out }
}

function summary (output: string, phase: number): Record<string, string> {
  const lines = output.trimEnd().split('\n')
  const last = lines[lines.length - 1]
  if (!last.startsWith('gpu-check: ') || !last.includes(` phase=${phase} `)) throw new Error(`the last line is not phase ${phase}'s summary:\n${output.slice(-3000)}`)
  if (!output.slice(-TAIL).includes(last)) throw new Error('the summary is not inside the last 12,000 characters')
  return Object.fromEntries(last.slice('gpu-check: '.length).split(' ').map(kv => kv.split('=')))
}

test.serial('pack puts into .dev what a device call needs, and the view fits the device tool', t => {
  t.timeout(600_000)
  const packed = execFileSync('bash', ['scripts/gpu-check.sh', 'pack'], { cwd: ROOT, env: { ...process.env, ...addon }, encoding: 'utf8', timeout: 600_000 })
  t.regex(packed, /device view: \d+ MiB of 64/)
  const carry = execFileSync('bash', ['scripts/gpu-check.sh', 'carry'], { cwd: ROOT, env: { ...process.env, ...addon }, encoding: 'utf8' }).trim().split('\n')
  t.deepEqual(carry, ['.dev', 'build-emu/Release', 'dist'])
  for (const f of ['node.xz', 'modules.tar.xz', 'reference.tar.xz', 'commit']) t.true(existsSync(path.join(ROOT, '.dev', f)), f)
  // The production dependency set, as npm lists it, is what travels.
  const modules = readFileSync(path.join(ROOT, '.dev', 'modules.txt'), 'utf8').split('\n')
  for (const m of ['node_modules/sharp', 'node_modules/node-gyp-build']) t.true(modules.includes(m), m)
  t.false(modules.includes('node_modules/ava'), 'dev tools stay behind')
  execFileSync('bash', ['scripts/device-view.sh', 'make', view], { cwd: ROOT, env: { ...process.env, ...addon }, encoding: 'utf8' })
  t.false(existsSync(path.join(view, 'node_modules')))
  t.true(existsSync(path.join(view, 'build-emu', 'Release', 'pg25.node')))
})

test.serial('phase 1 on the device view: golden stages and pipeline, GPU vs CPU, every headline timing', t => {
  t.timeout(600_000)
  const r = runPhase(view, 1, 'p1')
  t.is(r.status, 0, r.output.slice(-4000))
  t.notRegex(r.output, /FAIL/)
  const f = summary(r.output, 1)
  t.is(f.verdict, 'pass')
  t.is(f.golden, 'pass')
  t.true(Number(f.gpu_vs_cpu) <= 2e-2, f.gpu_vs_cpu)
  for (const k of ['unet_step_ms', 'unet_no_graph_ms', 'vae_ms', 'text_ms', 'generate_s', 'peak_gib', 'wall_s']) t.true(Number(f[k]) > 0, `${k}=${f[k]}`)
  t.regex(r.output, /UNet, synthetic weights, GPU vs CPU @256 +\S+ +pass/)
  t.regex(r.output, /golden pipeline_dpm\.safetensors PSNR +[0-9.]+ dB +pass/)
  // The libraries line names versions; the plan cost is counted (the emulation's cuDNN builds plans too).
  t.regex(r.output, /libraries +driver CUDA \d+\.\d+, runtime CUDA \d+\.\d+, cuBLASLt \d+\.\d+\.\d+ at .+, cuDNN \d+\.\d+\.\d+ at /)
  t.true(Number(f.cudnn_plans) > 0, f.cudnn_plans)
  // PyTorch's whole-model timings need diffusers (pack carries it where a mirror is): named either way.
  t.true('torch_unet_ms' in f && 'torch_vae_ms' in f && 'unet_ratio' in f)
  t.regex(r.output, /pytorch (whole-model timings +(skipped|unavailable)|unet_step \(diffusers, eager\) +[0-9.]+ ms)/)
  t.is(readFileSync(path.join(r.out, 'gpu-check-phase1.log'), 'utf8'), r.output, 'the whole output is in $OUT')
})

test.serial('phase 2 on the device view: the per-op profile, NCHW, every op case timed on the device', t => {
  t.timeout(600_000)
  const r = runPhase(view, 2, 'p2')
  t.is(r.status, 0, r.output.slice(-4000))
  const f = summary(r.output, 2)
  t.is(f.verdict, 'done')
  for (const k of ['profile_unet_ms', 'profile_vae_ms', 'unet_nchw_ms', 'vae_nchw_ms']) t.true(Number(f[k]) > 0, `${k}=${f[k]}`)
  for (const op of ['conv2d', 'linear', 'attention', 'group_norm', 'layer_norm']) t.regex(r.output, new RegExp(`profile unet call: ${op} +[0-9.]+ ms +[1-9][0-9]* calls`), op)
  t.regex(r.output, /profile vae decode: conv2d +[0-9.]+ ms +[1-9][0-9]* calls/)
  // Each convolution four ways (cuDNN and im2col, NHWC and NCHW), each GroupNorm in both layouts, with the
  // device time first and the wall time beside it.
  for (const name of ['conv3x3 640ch 64x64 b2 +bias+residual', 'conv3x3 640ch 64x64 b2 +bias+residual nchw', 'conv3x3 640ch 64x64 b2 +bias+residual im2col',
    'conv3x3 640ch 64x64 b2 +bias+residual im2col nchw', 'group_norm vae 1x128x1024x1024 g32', 'group_norm vae 1x128x1024x1024 g32 nchw', 'sdpa vae 16384 tokens d512',
    'sdpa 4096 tokens 10 heads rows16', 'gemm 8192x640x5120', 'geglu 2x4096x(2x2560)']) {
    t.regex(r.output, new RegExp(`op ${name.replace(/[+.()]/g, c => `\\${c}`)} +[0-9.]+ ms +wall [0-9.]+`), name)
  }
})

// One piece left out of what travels: the run stops at once and says what is missing.
for (const [piece, expected] of [['modules.tar.xz', /no node_modules and no \.dev\/modules\.tar\.xz/], ['reference.tar.xz', /no reference data/]] as const) {
  test.serial(`a device view without .dev/${piece} fails, naming it`, t => {
    const partial = path.join(work, `view-without-${piece}`)
    cpSync(view, partial, { recursive: true, filter: src => !src.startsWith(path.join(view, 'node_modules')) })
    rmSync(path.join(partial, '.dev', piece))
    const r = runPhase(partial, 1, `without-${piece}`)
    t.not(r.status, 0)
    t.regex(r.output, expected)
  })
}
