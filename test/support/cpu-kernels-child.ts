// Run by test/native/cpu-kernels.test.ts in a child process (PG25_CPU_ISA picks the kernels at the first GEMM):
// computes each case of CASES on the CPU backend and prints the outputs as base64 float32 JSON.
import { Runtime } from '../../lib'
import { loadNative } from '../../lib/native'
import { CASES, inputsOf } from './cpu-kernels-cases'

async function main (): Promise<void> {
  const rt = Runtime.open('cpu', () => {})
  const out: Record<string, string> = { kernel: loadNative().runtimeInfo().cpuKernel }
  for (const c of CASES) {
    const ts = inputsOf(c).map(h => h === null ? null : rt.fromHost(h.data, h.shape))
    const y = await rt.engine.op(c.op, ts, c.attrs ?? {})
    out[c.name] = Buffer.from(rt.toHost(y).buffer).toString('base64')
    for (const t of [...ts, y]) t?.dispose()
  }
  rt.dispose()
  process.stdout.write(JSON.stringify(out))
}

main().catch(err => { console.error(err); process.exitCode = 1 })
