// Run by test/native/cpu-kernels.test.ts in a child process (PG25_CPU_ISA picks the kernels at the first GEMM):
// computes each case of CASES on the CPU backend and prints the outputs as base64 float32 JSON.
import { Runtime } from '../../lib'
import { loadNative } from '../../lib/native'
import { BF16_ATTENTION_CASES, CASES, HALF_CASES, inputsOf } from './cpu-kernels-cases'

async function main (): Promise<void> {
  const rt = Runtime.open('cpu', () => {})
  const info = loadNative().runtimeInfo()
  const out: Record<string, string> = { kernel: info.cpuKernel, isa: info.cpuIsa }
  const runCase = async (c: typeof CASES[number], key: string, weight: boolean): Promise<void> => {
    // The second input of a product is its weight: stored as setWeightPrecision says when `weight`.
    const ts = inputsOf(c).map((h, i) =>
      h === null ? null : i === 1 && weight ? rt.engine.fromHost(h.data, h.shape, true) : rt.fromHost(h.data, h.shape))
    const y = await rt.engine.op(c.op, ts, c.attrs ?? {})
    out[key] = Buffer.from(rt.toHost(y).buffer).toString('base64')
    for (const t of [...ts, y]) t?.dispose()
  }
  for (const c of CASES) await runCase(c, c.name, false)
  for (const kind of ['bf16', 'fp16'] as const) {
    rt.engine.setWeightPrecision(kind)
    for (const c of HALF_CASES) await runCase(c, `${c.name} ${kind}`, true)
    if (kind === 'bf16') for (const c of BF16_ATTENTION_CASES) await runCase(c, `${c.name} bf16`, false)
  }
  rt.dispose()
  process.stdout.write(JSON.stringify(out))
}

main().catch(err => { console.error(err); process.exitCode = 1 })
