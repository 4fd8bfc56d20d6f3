// The emulated cuDNN's own checks (build-emu/Release/pg25_emu_cudnn_selftest, from
// native/cuda/emu/selftest/selftest_cudnn.cc): its graphs against a double-precision reference, and its refusals
// of misuse (attribute types and counts, late attributes, shapes, misaligned or stray pointers, a
// missing workspace), each with the documented status and recorded as misuse. The conv tests trust it.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

const BINARY = path.join(__dirname, '..', '..', '..', 'build-emu', 'Release', 'pg25_emu_cudnn_selftest')
const CHECKS = ['cudnn_graphs_match_reference', 'cudnn_attributes_checked', 'cudnn_shapes_and_pointers_checked', 'live allocations 0']

test('the emulated cuDNN passes every check of its self-test', t => {
  t.true(fs.existsSync(BINARY), `${BINARY} is missing: run npm run build:emu`)
  const env = { ...process.env }
  delete env.PG25_EMU_CUDNN
  const r = spawnSync(BINARY, [], { encoding: 'utf8', timeout: 120_000, killSignal: 'SIGKILL', env })
  const lines = r.stdout.split('\n').filter(l => l !== '')
  t.deepEqual(lines.filter(l => l.startsWith('FAIL')), [], r.stdout + r.stderr)
  t.deepEqual(lines.filter(l => l.startsWith('ok ')).map(l => l.slice(3)), CHECKS)
  t.is(r.status, 0)
})

test('the self-test fails where the emulated heuristics offer no engine (it can fail)', t => {
  const r = spawnSync(BINARY, [], { encoding: 'utf8', timeout: 120_000, killSignal: 'SIGKILL', env: { ...process.env, PG25_EMU_CUDNN: 'none' } })
  t.regex(r.stdout, /FAIL cudnn_graphs_match_reference: .*mode A offers 0 engines/)
  t.is(r.status, 1)
})
