// The CUDA emulation's own self-test (native/cuda/emu/selftest_*.cc, built by `npm run build:emu` as
// build-emu/Release/pg25_emu_selftest): fp16/bf16 rounding against independent references, SIMT
// semantics of kernels, failure detection (never a hang), and the cudart and cuBLASLt stand-ins. The
// other emulation tests trust the emulation; this one checks it. Every check is listed here by name, so
// a check that is dropped, renamed or silently skipped fails this test.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

const BINARY = path.join(__dirname, '..', '..', '..', 'build-emu', 'Release', 'pg25_emu_selftest')

const CHECKS = [
  'half_all_patterns',
  'half_round_nearest_even',
  'half_matches_f16c',
  'bf16_all_patterns',
  'bf16_round_nearest_even',
  'simt_block_reduce',
  'simt_shuffles',
  'simt_votes',
  'simt_syncwarp',
  'simt_atomics',
  'simt_dynamic_shared',
  'fail_syncthreads_skipped',
  'fail_shuffle_mask_omits_caller',
  'fail_shuffle_exited_lane',
  'fail_warp_divergence',
  'simt_ldmatrix',
  'simt_cp_async',
  'fail_ldmatrix_misaligned',
  'fail_cp_async_never_waited',
  'cudart_streams_deferred',
  'cudart_memcpy2d',
  'cudart_copy_validation',
  'cudart_alloc_align_poison',
  'cudart_free_async',
  'cudart_events',
  'cudart_graph_capture',
  'cudart_graph_memory_nodes',
  'cudart_capture_sync_invalidates',
  'cudart_out_of_memory',
  'cudart_destroyed_stream',
  'cudart_old_driver',
  'cudart_devices_per_thread',
  'cudart_invalid_launch_config',
  'cudart_report_concurrent',
  'cublaslt_gemm',
  'cublaslt_epilogues',
  'cublaslt_beta0_ignores_c',
  'cublaslt_unaligned_refused',
  'cublaslt_extent_refused',
  'cublaslt_attribute_size_refused'
]

// The comparison with the CPU's F16C converter is the one check that may be skipped: only on a CPU
// without F16C.
function cpuLacksF16C (): boolean {
  if (process.arch !== 'x64' && process.arch !== 'ia32') return true
  try {
    return !/^flags\s*:.*\bf16c\b/m.test(fs.readFileSync('/proc/cpuinfo', 'utf8'))
  } catch {
    return false
  }
}

interface Run { status: number | null, signal: string | null, stdout: string, stderr: string }

function selftest (args: string[] = []): Run {
  // Bounded: the program has its own 60 s watchdog per check, this is the backstop.
  const r = spawnSync(BINARY, args, { encoding: 'utf8', timeout: 240_000, killSignal: 'SIGKILL', maxBuffer: 64 << 20 })
  if (r.error) throw r.error
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }
}

test('the CUDA emulation passes every check of its self-test', t => {
  t.true(fs.existsSync(BINARY), `${BINARY} is missing: run npm run build:emu`)
  const r = selftest()
  const lines = r.stdout.split('\n').filter(l => l !== '')
  const ok = lines.filter(l => l.startsWith('ok ')).map(l => l.slice(3).trim())
  const skipped = lines.filter(l => l.startsWith('skip ')).map(l => l.slice(5).split(':')[0])
  const failed = lines.filter(l => l.startsWith('FAIL '))
  const detail = `\n--- stdout\n${r.stdout}\n--- stderr (kernel failures here are expected)\n${r.stderr}`
  t.deepEqual(failed, [], `checks failed:${detail}`)
  t.is(r.signal, null, `killed by ${r.signal}:${detail}`)
  t.is(r.status, 0, `exit status ${r.status}:${detail}`)
  for (const name of CHECKS) {
    const allowedSkip = name === 'half_matches_f16c' && cpuLacksF16C()
    t.true(ok.includes(name) || (allowedSkip && skipped.includes(name)), `check ${name} did not report ok:${detail}`)
  }
  t.deepEqual(ok.filter(n => !CHECKS.includes(n)), [], 'the self-test ran checks this test does not list: add them to CHECKS')
  t.deepEqual(new Set(ok).size, ok.length, 'a check reported twice')
  t.regex(lines[lines.length - 1], new RegExp(`^${CHECKS.length} of ${CHECKS.length} checks passed$`))
})

test('the self-test runs single checks by name and refuses an unknown one', t => {
  t.true(fs.existsSync(BINARY), `${BINARY} is missing: run npm run build:emu`)
  const one = selftest(['fail_warp_divergence'])
  t.is(one.status, 0, one.stdout + one.stderr)
  t.deepEqual(one.stdout.split('\n').filter(l => l !== ''), ['ok fail_warp_divergence', '1 of 1 checks passed'])
  // The kernel failures it provokes are printed by the emulation, naming kernel and collective.
  t.regex(one.stderr, /kernel divergent_collectives_kernel, block \(0,0,0\): warp divergence/)
  const none = selftest(['no_such_check'])
  t.is(none.status, 1)
  t.regex(none.stdout, /^FAIL selection/m)
})
