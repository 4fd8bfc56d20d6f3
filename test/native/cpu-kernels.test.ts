// The CPU backend's kernels, as each CPU can pick them (PG25_CPU_ISA: AVX-512 where present, AVX2,
// the portable one), against float64 references computed plainly in test/support/cpu-kernels-cases.ts, over
// shapes that leave partial tiles in every kernel. CI's machine has AVX-512, so without this only that
// kernel would ever be checked.
import test from 'ava'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { CASES, reference } from '../support/cpu-kernels-cases'

const run = promisify(execFile)
const CHILD = path.join(__dirname, '..', 'support', 'cpu-kernels-child.js')

// What this CPU offers, from the kernel's own flags (Linux).
const flags = new Set((readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '').trim().split(/\s+/))
const avx2 = flags.has('avx2') && flags.has('fma')
const expected: Record<string, string> = { default: avx2 && flags.has('avx512f') ? 'avx512' : avx2 ? 'avx2' : 'generic', avx2: avx2 ? 'avx2' : 'generic', generic: 'generic' }

for (const isa of ['default', 'avx2', 'generic']) {
  test(`CPU kernels (${isa}) match float64 references`, async t => {
    const env: NodeJS.ProcessEnv = { ...process.env, PG25_THREADS: '2' }
    delete env.PG25_CPU_ISA
    if (isa !== 'default') env.PG25_CPU_ISA = isa
    const { stdout } = await run(process.execPath, [CHILD], { env, maxBuffer: 64 << 20 })
    const outs = JSON.parse(stdout) as Record<string, string>
    t.is(outs.kernel, expected[isa], 'the kernel the child ran')
    for (const c of CASES) {
      const b = Buffer.from(outs[c.name], 'base64')
      const got = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4)
      const want = reference(c)
      t.is(got.length, want.length, c.name)
      let num = 0, den = 0
      for (let i = 0; i < want.length; i++) { num += (got[i] - want[i]) ** 2; den += want[i] ** 2 }
      const rel = Math.sqrt(num / Math.max(den, 1e-30))
      t.true(rel <= 2e-6, `${c.name}: relative error ${rel}`)
    }
  })
}
