#!/usr/bin/env node
// pg25: text to image from the command line. With no --model it runs the built-in demo model.
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ensureDemoModel } from './demo/demo-model'
import { Pg25Error } from './errors'
import { Pipeline, type GenerateOptions } from './pipeline'
import type { Device } from './runtime'
import { createServer } from './server'

const HELP = `Usage: pg25 "<prompt>" [options]
       pg25 serve [--port 8080] [--host 127.0.0.1] [--queue 8] [--model DIR] [--device NAME] [--variant fp16]

Generates an image with Playground v2.5 (or the built-in demo model) and writes a PNG.

Options:
  -o, --output FILE      PNG to write (default: pg25-<seed>.png)
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

serve: POST /generate with a JSON body ({"prompt": "...", "seed": 1, ...}: the generate() options)
answers with a PNG, or with JSON ({"seed", "images": [base64 PNG]}) when the body says "response": "json";
requests beyond --queue get 503; a client that disconnects cancels its run; GET /health reports the queue.

Real weights: download playgroundai/playground-v2.5-1024px-aesthetic (diffusers format, fp16 files),
then: pg25 "a cat in a spacesuit" --model ./playground-v2.5-1024px-aesthetic --variant fp16 -o cat.png
`

const DEMO_NOTICE = 'pg25: no --model given, so this runs the built-in demo model: Playground v2.5\'s architecture at a tiny size with\n' +
  'untrained synthetic weights. It draws noise-like pictures. For real images point --model (or PG25_MODEL) at the\n' +
  'diffusers-format playgroundai/playground-v2.5-1024px-aesthetic directory (see --help).\n'

function int (name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isInteger(n)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `--${name} must be an integer, got ${JSON.stringify(v)}`)
  return n
}

function bar (label: string, done: number, total: number): string {
  const width = 24
  const filled = Math.round((done / total) * width)
  return `\r${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`
}

async function modelDir (given: string | undefined): Promise<string> {
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
  const pipe = await Pipeline.fromPretrained(await modelDir(values.model as string | undefined), {
    device: ((values.device as string | undefined) ?? 'auto') as Device,
    variant: values.variant as 'fp16' | undefined,
    onWarning: m => process.stderr.write(`${m}\n`)
  })
  const server = createServer(pipe, { queueLimit })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, host, resolve) })
  const addr = server.address()
  process.stderr.write(`pg25 serve: listening on http://${host}:${typeof addr === 'object' && addr ? addr.port : port} (${pipe.device}, queue ${queueLimit})\n`)
  await new Promise<void>(resolve => {
    const stop = (): void => { server.close(() => resolve()) }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  await pipe.dispose()
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
  const guidance = values.guidance === undefined ? undefined : Number(values.guidance)
  if (guidance !== undefined && !Number.isFinite(guidance)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `--guidance must be a number, got ${JSON.stringify(values.guidance)}`)
  if (values.variant !== undefined && values.variant !== 'fp16') throw new Pg25Error('PG25_INVALID_ARGUMENT', '--variant must be fp16')
  const showProgress = values.quiet !== true
  const tty = process.stderr.isTTY
  const progress = (line: string, end = false): void => {
    if (!showProgress) return
    process.stderr.write(tty ? line + (end ? '\n' : '') : (end ? line.trimStart() + '\n' : ''))
  }

  const started = Date.now()
  const pipe = await Pipeline.fromPretrained(await modelDir(values.model), {
    device: (values.device ?? 'auto') as Device,
    variant: values.variant as 'fp16' | undefined,
    onWarning: m => process.stderr.write(`${m}\n`),
    onProgress: p => progress(bar('loading', p.loaded, p.total), p.component === 'done')
  })
  try {
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
    const r = await pipe.generate(prompt, opts)
    const out = values.output ?? `pg25-${r.seed}.png`
    await fs.writeFile(out, await r.images[0].toPNG())
    const secs = ((Date.now() - started) / 1000).toFixed(1)
    process.stderr.write(`done in ${secs} s · seed ${r.seed} · ${r.width}x${r.height} on ${pipe.device} · ${out}\n`)
    return 0
  } finally {
    await pipe.dispose()
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(code => { process.exitCode = code }, (err: unknown) => {
    const e = err as Error & { code?: string }
    process.stderr.write(`pg25: ${e.message}${e.code ? ` (${e.code})` : ''}\n`)
    process.exitCode = 1
  })
}
