// `pg25 download <id>`: fetches a Hub model into the Hugging Face cache and prints its local folder.
import { parseArgs } from 'node:util'
import { Pg25Error } from '../errors'
import { downloadModel, type DownloadProgress } from '../hub/resolve'

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

function fmt (bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`
}

/** Progress on stderr: a bar redrawn in place on a terminal, else one line every 10%. */
function reporter (tty: boolean): { update: (p: DownloadProgress) => void, end: () => void, seen: () => boolean } {
  let tenth = -1
  let any = false
  return {
    update: p => {
      any = true
      const frac = p.totalBytes > 0 ? p.loadedBytes / p.totalBytes : 1
      if (tty) {
        const filled = Math.round(frac * 24)
        const name = p.file.length > 40 ? `…${p.file.slice(-39)}` : p.file
        process.stderr.write(`\rdownloading [${'#'.repeat(filled)}${'.'.repeat(24 - filled)}] ${fmt(p.loadedBytes)} / ${fmt(p.totalBytes)}  ${name}\x1b[K`)
      } else if (Math.floor(frac * 10) > tenth) {
        tenth = Math.floor(frac * 10)
        process.stderr.write(`downloading: ${tenth * 10}% (${fmt(p.loadedBytes)} of ${fmt(p.totalBytes)})\n`)
      }
    },
    end: () => { if (tty && any) process.stderr.write('\n') },
    seen: () => any
  }
}

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
  const progress = reporter(process.stderr.isTTY === true)
  const ac = new AbortController()
  const onSigint = (): void => { ac.abort() }
  process.once('SIGINT', onSigint)
  try {
    const dir = await downloadModel(id, {
      revision: values.revision,
      variant: values.variant as 'fp16' | undefined,
      token: values.token,
      signal: ac.signal,
      onProgress: values.quiet === true ? undefined : progress.update,
      onWarning: m => process.stderr.write(`pg25 download: ${m}\n`)
    })
    progress.end()
    if (values.quiet !== true && !progress.seen()) process.stderr.write(`pg25 download: ${id} is already in the cache\n`)
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
