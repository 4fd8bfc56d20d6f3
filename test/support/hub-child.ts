// Run by hub-failures.test.ts as a separate process: downloads argv[2] (fp16) and prints the folder.
import { downloadModel } from '../../lib/hub'

downloadModel(process.argv[2], { variant: 'fp16' }).then(dir => { process.stdout.write(dir) }, (err: Error & { code?: string }) => {
  process.stderr.write(`${err.code ?? ''} ${err.message}\n`)
  process.exitCode = 1
})
