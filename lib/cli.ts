#!/usr/bin/env node
// pg25: text to image from the command line. With no --model it runs the built-in demo model.
import { randomInt } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ensureDemoModel } from './demo/demo-model'
import { Pg25Error } from './errors'
import { openOutput } from './output-file'
import { Pipeline, type GenerateOptions } from './pipeline'
import type { Device } from './runtime'
import { createServer, DEFAULT_MAX_PIXELS } from './server'

const HELP = `Usage: pg25 "<prompt>" [options]
       pg25 serve [--port 8080] [--host 127.0.0.1] [--queue 8] [--max-pixels N] [--token T]
                  [--headers-timeout S] [--request-timeout S] [--model DIR] [--device NAME] [--variant fp16]

Generates an image with Playground v2.5 (or the built-in demo model) and writes a PNG.

Options:
  -o, --output FILE      PNG to write (default: pg25-<seed>.png). An existing PNG there is replaced (atomically:
                         a failed write leaves it as it was); any other existing file is refused, before loading
  -m, --model DIR        diffusers-format model directory (default: $PG25_MODEL, else the demo model)
  -n, --negative TEXT    negative prompt
      --steps N          denoising steps (default 50)
      --guidance X       classifier-free guidance scale (default 3)
      --width N          image width, a multiple of 8 (default: the model's, 1024 for Playground v2.5)
      --height N         image height, a multiple of 8
      --seed N           random seed (default: random; printed at the end)
      --scheduler NAME   dpmpp-2m (the model's default) or euler
      --device NAME      auto (default), cpu or cuda
      --variant fp16     load the fp16 weight files
  -q, --quiet            no progress bar
  -h, --help             this help
  -v, --version          the package version

serve: POST /generate with a JSON body (Content-Type: application/json; {"prompt": "...", "seed": 1, ...}:
the generate() options) answers with a PNG, or with JSON ({"seed", "images": [base64 PNG]}) when the body
says "response": "json"; requests beyond --queue get 503; a client that disconnects cancels its run;
GET /health reports the queue. SIGTERM or SIGINT stops it: running requests are cancelled, then it exits.
      --max-pixels N       most output pixels (width x height x count) per request (default ${DEFAULT_MAX_PIXELS}); more get 413
      --token T            require "Authorization: Bearer T" on /generate (default: $PG25_SERVER_TOKEN, else none)
      --headers-timeout S  seconds a client has to send its headers (default 10)
      --request-timeout S  seconds a client has to send its whole request (default 30); then 408

Real weights: download playgroundai/playground-v2.5-1024px-aesthetic (diffusers format, fp16 files),
then: pg25 "a cat in a spacesuit" --model ./playground-v2.5-1024px-aesthetic --variant fp16 -o cat.png
`

const DEMO_NOTICE = 'pg25: no --model given, so this runs the built-in demo model: Playground v2.5\'s architecture at a tiny size with\n' +
  'untrained synthetic weights. It draws noise-like pictures. For real images point --model (or PG25_MODEL) at the\n' +
  'diffusers-format playgroundai/playground-v2.5-1024px-aesthetic directory (see --help).\n'

// Plain decimal only: Number() would take '' as 0 and '0x10' as 16.
function int (name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!/^[+-]?\d+$/.test(v) || !Number.isSafeInteger(n)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `--${name} must be a decimal integer, got ${JSON.stringify(v)}`)
  return n
}

function num (name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `--${name} must be a decimal number, got ${JSON.stringify(v)}`)
  return Number(v)
}

function bar (label: string, done: number, total: number): string {
  const width = 24
  const filled = Math.round((done / total) * width)
  return `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`
}

/** --model, else $PG25_MODEL (empty counts as unset), else the demo model. An empty --model is a mistake, not the demo. */
async function modelDir (given: string | undefined): Promise<string> {
  if (given === '') throw new Pg25Error('PG25_INVALID_ARGUMENT', '--model must name a model directory, got ""')
  const dir = given ?? process.env.PG25_MODEL
  if (dir !== undefined && dir !== '') return dir
  process.stderr.write(DEMO_NOTICE)
  return await ensureDemoModel()
}

async function serve (values: Record<string, string | boolean | undefined>): Promise<number> {
  const port = int('port', values.port as string | undefined) ?? 8080
  const host = (values.host as string | undefined) ?? '127.0.0.1'
  const queueLimit = int('queue', values.queue as string | undefined) ?? 8
  if (queueLimit < 1) throw new Pg25Error('PG25_INVALID_ARGUMENT', '--queue must be at least 1')
  const maxPixels = int('max-pixels', values['max-pixels'] as string | undefined)
  if (maxPixels !== undefined && maxPixels < 64) throw new Pg25Error('PG25_INVALID_ARGUMENT', '--max-pixels must be at least 64')
  const seconds = (name: string): number | undefined => {
    const s = num(name, values[name] as string | undefined)
    if (s !== undefined && !(s > 0 && s <= 3600)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `--${name} must be from 0 to 3600 seconds`)
    return s === undefined ? undefined : Math.max(1, Math.round(s * 1000))
  }
  const headersTimeoutMs = seconds('headers-timeout')
  const requestTimeoutMs = seconds('request-timeout')
  const token = (values.token as string | undefined) ?? (process.env.PG25_SERVER_TOKEN || undefined)
  if (token === '') throw new Pg25Error('PG25_INVALID_ARGUMENT', '--token must not be empty')
  const pipe = await Pipeline.fromPretrained(await modelDir(values.model as string | undefined), {
    device: ((values.device as string | undefined) ?? 'auto') as Device,
    variant: values.variant as 'fp16' | undefined,
    onWarning: m => process.stderr.write(`${m}\n`)
  })
  const server = createServer(pipe, { queueLimit, maxPixels, token, headersTimeoutMs, requestTimeoutMs })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, host, resolve) })
  const addr = server.address()
  process.stderr.write(`pg25 serve: listening on http://${host}:${typeof addr === 'object' && addr ? addr.port : port} (${pipe.device}, queue ${queueLimit}${token ? ', token required' : ''})\n`)
  await new Promise<void>(resolve => {
    const stop = (signal: string): void => {
      process.stderr.write(`pg25 serve: ${signal}: cancelling running requests and shutting down\n`)
      // A second signal means now; and whatever happens, the process ends within a bound.
      for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => process.exit(130))
      setTimeout(() => { process.stderr.write('pg25 serve: shutdown took too long; exiting\n'); process.exit(1) }, 15_000).unref()
      resolve()
    }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  await server.shutdown(5000)
  await pipe.dispose()
  process.stderr.write('pg25 serve: stopped\n')
  return 0
}

export async function main (argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o' },
      model: { type: 'string', short: 'm' },
      negative: { type: 'string', short: 'n' },
      steps: { type: 'string' },
      guidance: { type: 'string' },
      width: { type: 'string' },
      height: { type: 'string' },
      seed: { type: 'string' },
      scheduler: { type: 'string' },
      device: { type: 'string' },
      variant: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      queue: { type: 'string' },
      'max-pixels': { type: 'string' },
      token: { type: 'string' },
      'headers-timeout': { type: 'string' },
      'request-timeout': { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' }
    }
  })
  if (values.help) { process.stdout.write(HELP); return 0 }
  if (values.version) {
    process.stdout.write(`${JSON.parse(await fs.readFile(path.join(__dirname, '..', '..', 'package.json'), 'utf8')).version}\n`)
    return 0
  }
  if (positionals[0] === 'serve' && positionals.length === 1) return await serve(values)
  if (positionals.length !== 1) {
    process.stderr.write('pg25: give exactly one prompt (quote it). See pg25 --help.\n')
    return 2
  }
  const prompt = positionals[0]
  const guidance = num('guidance', values.guidance)
  if (values.variant !== undefined && values.variant !== 'fp16') throw new Pg25Error('PG25_INVALID_ARGUMENT', '--variant must be fp16')
  const showProgress = values.quiet !== true
  const tty = process.stderr.isTTY
  const progress = (line: string, end = false): void => {
    if (!showProgress) return
    process.stderr.write(tty ? line + (end ? '\n' : '') : (end ? line.trimStart() + '\n' : ''))
  }

  const opts: GenerateOptions = {
    negativePrompt: values.negative,
    steps: int('steps', values.steps),
    guidanceScale: guidance,
    width: int('width', values.width),
    height: int('height', values.height),
    seed: int('seed', values.seed),
    scheduler: values.scheduler as GenerateOptions['scheduler'],
    onStep: s => progress(bar('steps  ', s.step, s.steps), s.step === s.steps)
  }
  const seed = opts.seed ?? randomInt(0, 2 ** 32)
  // The output is checked (and its temporary file made) before the model loads.
  const outPath = values.output ?? `pg25-${seed}.png`
  const out = await openOutput(outPath)
  const started = Date.now()
  let pipe: Pipeline | undefined
  try {
    const dir = await modelDir(values.model)
    pipe = await Pipeline.fromPretrained(dir, {
      device: (values.device ?? 'auto') as Device,
      variant: values.variant as 'fp16' | undefined,
      modelName: path.basename(path.resolve(dir)),
      onWarning: m => process.stderr.write(`${m}\n`),
      onProgress: p => progress(bar('loading', p.loadedBytes, p.totalBytes), p.loadedBytes === p.totalBytes && p.component === 'vae')
    })
    const r = await pipe.generate(prompt, { ...opts, seed })
    await out.commit(await r.images[0].toPNG())
    const secs = ((Date.now() - started) / 1000).toFixed(1)
    process.stderr.write(`done in ${secs} s · seed ${r.seed} · ${r.width}x${r.height} on ${pipe.device} · ${outPath}\n`)
    return 0
  } finally {
    await out.discard()
    await pipe?.dispose()
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(code => { process.exitCode = code }, (err: unknown) => {
    const e = err as Error & { code?: string }
    process.stderr.write(`pg25: ${e.message}${e.code ? ` (${e.code})` : ''}\n`)
    process.exitCode = 1
  })
}
