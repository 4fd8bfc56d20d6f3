// The CPU backend's kernels, as each CPU can pick them (PG25_CPU_ISA: AVX-512 where present, AVX2,
// the portable one), against float64 references computed plainly in test/support/cpu-kernels-cases.ts, over
// shapes that leave partial tiles in every kernel. CI's machine has AVX-512, so without this only that
// kernel would ever be checked. The products run again with bf16 and fp16 weights: on AVX512-BF16 the bf16
// kernel (vdpbf16ps, checked against the reference with both operands rounded to bf16), elsewhere, and
// with PG25_CPU_ISA=avx512, the weights widened to float32 as they are packed.
import test from 'ava'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { BF16_ATTENTION_CASES, CASES, HALF_CASES, halfReference, reference } from '../support/cpu-kernels-cases'

const run = promisify(execFile)
const CHILD = path.join(__dirname, '..', 'support', 'cpu-kernels-child.js')

// What this CPU offers, from the kernel's own flags (Linux).
const flags = new Set((readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '').trim().split(/\s+/))
const avx2 = flags.has('avx2') && flags.has('fma')
const avx512 = avx2 && flags.has('avx512f')
const bf16 = avx512 && flags.has('avx512_bf16') && flags.has('avx512bw') && flags.has('avx512vl')
const expected: Record<string, string> = { default: avx512 ? 'avx512' : avx2 ? 'avx2' : 'generic', avx512: avx512 ? 'avx512' : avx2 ? 'avx2' : 'generic', avx2: avx2 ? 'avx2' : 'generic', generic: 'generic' }

const relative = (got: Float32Array, want: Float64Array): number => {
  let num = 0, den = 0
  for (let i = 0; i < want.length; i++) { num += (got[i] - want[i]) ** 2; den += want[i] ** 2 }
  return Math.sqrt(num / Math.max(den, 1e-30))
}

// avx512 differs from the default only where the processor has AVX512-BF16 (it turns the bf16 kernel off).
for (const isa of ['default', ...(bf16 ? ['avx512'] : []), 'avx2', 'generic']) {
  test(`CPU kernels (${isa}) match float64 references`, async t => {
    const env: NodeJS.ProcessEnv = { ...process.env, PG25_THREADS: '2' }
    delete env.PG25_CPU_ISA
    if (isa !== 'default') env.PG25_CPU_ISA = isa
    const { stdout } = await run(process.execPath, [CHILD], { env, maxBuffer: 64 << 20 })
    const outs = JSON.parse(stdout) as Record<string, string>
    t.is(outs.kernel, expected[isa], 'the kernel the child ran')
    const dot = isa === 'default' && bf16
    t.is(outs.isa, dot ? 'avx512bf16' : expected[isa], 'the instruction set the child chose')
    const got = (key: string): Float32Array => {
      const b = Buffer.from(outs[key], 'base64')
      return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4)
    }
    for (const c of CASES) {
      const want = reference(c)
      t.is(got(c.name).length, want.length, c.name)
      const rel = relative(got(c.name), want)
      t.true(rel <= 2e-6, `${c.name}: relative error ${rel}`)
    }
    for (const kind of ['bf16', 'fp16'] as const) {
      for (const c of HALF_CASES) {
        const key = `${c.name} ${kind}`
        const rel = relative(got(key), halfReference(c, kind, dot))
        t.true(rel <= 2e-6, `${key}: relative error ${rel} against the rounded operands`)
        // and what the rounding costs against the float32 weights (bf16 keeps 8 bits, fp16 11)
        t.true(relative(got(key), reference(c)) <= (kind === 'bf16' ? 1e-2 : 1e-3), `${key} against float32`)
      }
    }
    // Attention under 'bf16': float32 as ever without the bf16 kernel; with it, within bf16's rounding (and not float32's result).
    for (const c of BF16_ATTENTION_CASES) {
      const rel = relative(got(`${c.name} bf16`), reference(c))
      if (dot) t.true(rel <= 1e-2 && rel > 1e-5, `${c.name} bf16: relative error ${rel}`)
      else t.true(rel <= 2e-6, `${c.name} bf16: relative error ${rel}`)
    }
  })
}
