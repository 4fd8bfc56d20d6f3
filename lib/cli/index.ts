#!/usr/bin/env node
// pg25: text to image from the command line (lib/cli/generate.ts), plus subcommands, one table entry
// each. With no --model it runs the built-in demo model.
import '../node-version'
import { GENERATE_FLAGS, GENERATE_HELP, generateCommand } from './generate'
import { SERVE_FLAGS } from './serve'

interface Command {
  /** one line for --help */
  summary: string
  /** its flags, so that one given to the wrong command is named as another command's */
  flags?: Record<string, unknown>
  run: (argv: string[], elsewhere: Record<string, string>) => Promise<number>
}

// Loaded on use: `pg25 "<prompt>"` never loads the Hub client, the server or the queue.
const COMMANDS: Record<string, Command> = {
  serve: { summary: 'an HTTP server on one loaded model (pg25 serve --help)', flags: SERVE_FLAGS, run: async (argv, elsewhere) => await (await import('./serve')).serveCommand(argv, elsewhere) },
  download: { summary: 'fetch a Hub model into the Hugging Face cache (pg25 download --help)', run: async argv => await (await import('./download')).downloadCommand(argv) },
  worker: { summary: 'a fleet worker taking jobs from a Redis queue (pg25 worker --help)', run: async argv => await (await import('./worker')).workerCommand(argv) }
}

const HELP = `${GENERATE_HELP}

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  pg25 ${name.padEnd(10)} ${c.summary}`).join('\n')}

Real weights: pg25 "a cat in a spacesuit" --model playgroundai/playground-v2.5-1024px-aesthetic --variant fp16 -o cat.png
(the first run downloads about 7 GB into the Hugging Face cache; later runs load from there)
`

/** Flags that belong to a command other than `except`, mapped to it (`--port` -> `pg25 serve`). */
function flagsElsewhere (except: string | null): Record<string, string> {
  const own = new Set(Object.keys(except === null ? GENERATE_FLAGS : COMMANDS[except].flags ?? {}))
  const out: Record<string, string> = {}
  for (const [name, c] of Object.entries(COMMANDS)) {
    if (name !== except) for (const f of Object.keys(c.flags ?? {})) if (!own.has(f)) out[f] = `pg25 ${name}`
  }
  if (except !== null) for (const f of Object.keys(GENERATE_FLAGS)) if (!own.has(f)) out[f] = 'pg25 "<prompt>"'
  return out
}

/** Runs the command line `argv` (without node and the script); resolves to the exit code. */
export async function main (argv: string[]): Promise<number> {
  const name = argv[0]
  if (name !== undefined && Object.hasOwn(COMMANDS, name)) return await COMMANDS[name].run(argv.slice(1), flagsElsewhere(name))
  return await generateCommand(argv, HELP, flagsElsewhere(null))
}

if (require.main === module) {
  const argv = process.argv.slice(2)
  main(argv).then(code => { process.exitCode = code }, (err: unknown) => {
    const e = err as Error & { code?: string }
    process.stderr.write(`pg25: ${e.message}${e.code ? ` (${e.code})` : ''}\n`)
    // --json promises JSON on stdout, a failure included.
    const generating = argv[0] === undefined || !Object.hasOwn(COMMANDS, argv[0])
    if (generating && argv.includes('--json')) process.stdout.write(`${JSON.stringify({ error: e.message,
      code: e.code ?? 'PG25_INTERNAL' })}\n`)
    process.exitCode = 1
  })
}
