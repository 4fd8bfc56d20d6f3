// Run by safetensors.test.ts as a separate process: reads every tensor of argv[2], argv[3] times over,
// as model loads and loadLoRA read them, and prints what each read gave ("ok" or the error's code).
// A signal (SIGBUS from a mapped file that shrank) would end it with no output.
import { fromNative } from '../../lib/errors'
import { loadNative } from '../../lib/native'

async function main (): Promise<void> {
  const native = loadNative()
  const [file, times] = [process.argv[2], Number(process.argv[3])]
  const entries = await native.inspectSafetensors(file)
  const requests = entries.map(e => ({ name: e.name, shape: e.shape, linear: false }))
  const out: string[] = []
  process.stderr.write('reading\n')
  for (let i = 0; i < times; i++) {
    try {
      await native.readTensors([{ path: file, paddle: false }], requests)
      out.push('ok')
    } catch (err) {
      const e = fromNative(err) as Error & { code: string }
      out.push(e.code)
    }
  }
  process.stdout.write(JSON.stringify(out))
}
void main()
