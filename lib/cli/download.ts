// `pg25 download <id>`: fetches a Hub model into the Hugging Face cache and prints its local folder.
import { parseArgs } from 'node:util'
import { Pg25Error } from '../errors'
import { downloadModel } from '../hub/resolve'
import { loadReporter } from './progress'

const USAGE = `Usage: pg25 download <org/name> [--revision R] [--variant fp16] [--token T] [--quiet]

Downloads what the pipeline needs of a Hugging Face Hub model (model_index.json, configs, tokenizers and
the weights of the chosen variant) into the Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else
~/.cache/huggingface/hub), where diffusers finds it too, and prints the local folder on stdout.
Progress goes to stderr. An interrupted download resumes where it stopped.
      --revision R   branch, tag or commit (default main)
      --variant fp16 the fp16 weight files (half the download; what Playground v2.5 is used with)
      --token T      access token for gated or private models (default: $HF_TOKEN, else \`huggingface-cli login\`'s)
  -q, --quiet        no progress
`

/**
 * Runs `pg25 download`; `argv` holds the arguments after `download`. Resolves to the exit code: 0 (the
 * folder printed on stdout), 1 (the download failed; the error on stderr), 2 (bad arguments), 130 (Ctrl-C).
 *
 * ```ts
 * process.exitCode = await downloadCommand(['playgroundai/playground-v2.5-1024px-aesthetic', '--variant', 'fp16'])
 * ```
 */
export async function downloadCommand (argv: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        revision: { type: 'string' },
        variant: { type: 'string' },
        token: { type: 'string' },
        quiet: { type: 'boolean', short: 'q' },
        help: { type: 'boolean', short: 'h' }
      }
    })
  } catch (err) {
    process.stderr.write(`pg25 download: ${(err as Error).message}\n${USAGE}`)
    return 2
  }
  const { values, positionals } = parsed
  if (values.help === true) { process.stdout.write(USAGE); return 0 }
  if (positionals.length !== 1) {
    process.stderr.write(`pg25 download: give exactly one model id\n${USAGE}`)
    return 2
  }
  if (values.variant !== undefined && values.variant !== 'fp16') {
    process.stderr.write(`pg25 download: --variant must be fp16, got ${JSON.stringify(values.variant)}\n`)
    return 2
  }
  const id = positionals[0]
  // The same bar as the CLI's own download phase; `seen` tells an up-to-date cache from a download.
  const progress = loadReporter(process.stderr)
  let seen = false
  const ac = new AbortController()
  const onSigint = (): void => { ac.abort() }
  process.once('SIGINT', onSigint)
  try {
    const dir = await downloadModel(id, {
      revision: values.revision,
      variant: values.variant as 'fp16' | undefined,
      token: values.token,
      signal: ac.signal,
      onProgress: values.quiet === true ? undefined : p => { seen = true; progress.update(p) },
      onWarning: m => process.stderr.write(`pg25 download: ${m}\n`)
    })
    progress.end()
    if (values.quiet !== true && !seen) process.stderr.write(`pg25 download: ${id} is already in the cache\n`)
    process.stdout.write(`${dir}\n`)
    return 0
  } catch (err) {
    progress.end()
    if (ac.signal.aborted) {
      process.stderr.write('pg25 download: interrupted; run it again to resume\n')
      return 130
    }
    const e = err as Error & { code?: string }
    process.stderr.write(`pg25 download: ${e.message}${e.code !== undefined ? ` (${e.code})` : ''}\n`)
    return e instanceof Pg25Error && e.code === 'PG25_INVALID_ARGUMENT' ? 2 : 1
  } finally {
    process.removeListener('SIGINT', onSigint)
  }
}
