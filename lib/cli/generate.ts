// pg25 "<prompt>": one generation, written to image files. Every flag, the input image's header and
// every output path are checked before the model loads, so no mistake costs a load or a run.
import { randomInt } from 'node:crypto'
import path from 'node:path'
import { Pg25Error } from '../errors'
import { probeImage } from '../image'
import { probeMask } from '../inpaint'
import { LORA_HELP, loadLoRAFlags, parseLoRAFlags } from '../lora/flags'
import { checkGenerateOptions, DEFAULT_GUIDANCE, DEFAULT_STEPS, strengthOf, type GenerateOptions } from '../options'
import { encodeImage, formatOf, numberedPaths, openOutput, type OutputFile } from '../output-file'
import type { GenerateQueue } from '../fleet/queue'
import type { LoadProgress, Pipeline } from '../pipeline'
import { CPU_FALLBACK } from '../runtime'
import { int, num, parseFlags, str, type Flags } from './args'
import { FLEET_HELP, openFleet } from './fleet'
import { catchInterrupts, INTERRUPTED } from './interrupt'
import { chooseModel, MODEL_FLAGS, MODEL_HELP, openPipeline } from './model'
import { loadReporter, stepReporter } from './progress'
import { packageVersion } from '../version'

export const GENERATE_FLAGS: Flags = {
  ...MODEL_FLAGS,
  output: { type: 'string', short: 'o' },
  negative: { type: 'string', short: 'n' },
  prompt2: { type: 'string' },
  negative2: { type: 'string' },
  steps: { type: 'string' },
  guidance: { type: 'string' },
  width: { type: 'string' },
  height: { type: 'string' },
  seed: { type: 'string' },
  scheduler: { type: 'string' },
  'prompt-style': { type: 'string' },
  count: { type: 'string' },
  image: { type: 'string' },
  strength: { type: 'string' },
  mask: { type: 'string' },
  lora: { type: 'string', multiple: true },
  redis: { type: 'string' },
  queue: { type: 'string' },
  json: { type: 'boolean' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' }
}

export const GENERATE_HELP = `Usage: pg25 "<prompt>" [options]

Generates images with Playground v2.5 (or the built-in demo model). Every option and the output path
are checked before the model loads.

Options:
  -o, --output FILE        image to write; the extension picks the format: .png, .jpg/.jpeg or .webp
                           (default: pg25-<seed>.png), with the generation parameters (PNG: a "parameters"
                           text chunk; JPEG/WebP: EXIF UserComment). An existing PNG, JPEG or WebP there is
                           replaced (atomically: a failed write leaves it as it was); other files are refused
      --count N            images from the prompt, in one batch (default 1): FILE, then FILE's name with
                           -2, -3, ... before the extension (out.png, out-2.png, out-3.png)
  -n, --negative TEXT      negative prompt
      --prompt2 TEXT       prompt for the second text encoder (default: the prompt)
      --negative2 TEXT     negative prompt for the second text encoder (default: --negative)
      --image FILE         image-to-image: start from this PNG, JPEG or WebP (its size, rounded down to
                           a multiple of 8, is the default output size)
      --strength X         with --image: how much to change it, in (0, 1] (default 0.3)
      --mask FILE          with --image: inpaint; repaint the white area of this mask (the image's size;
                           --strength then defaults to 0.9999, as in diffusers)
${LORA_HELP}
      --steps N            denoising steps (default 50)
      --guidance X         classifier-free guidance scale (default 3)
      --width N            image width, a multiple of 8 (default: the model's, 1024 for Playground v2.5)
      --height N           image height, a multiple of 8
      --seed N             random seed (default: random; printed at the end)
      --scheduler NAME     dpmpp-2m (the model's default) or euler
      --prompt-style NAME  how prompts are read: a1111 (default: (word:1.3), [word], BREAK, past 77
                           tokens), comfy (ComfyUI's weighting) or plain (diffusers: literal, cut at 77)
${MODEL_HELP}
${FLEET_HELP('queue')}
      --json               print a summary as JSON on stdout (files, seed, size, steps, timings, device);
                           nothing else goes to stdout
  -q, --quiet              no progress bars, and no notice when there is no GPU to use
  -h, --help               this help
  -v, --version            the package version

Progress goes to stderr: bars on a terminal, one line every 10% otherwise.`

// The generate() option each flag sets, for messages in the flags' names.
const FLAG_OF: Record<string, string> = {
  negativePrompt: 'negative', negativePrompt2: 'negative2', guidanceScale: 'guidance', promptStyle: 'prompt-style'
}

/** Re-words generate()'s option errors in flag names: `steps must be ...` -> `--steps must be ...`. */
function asFlags (err: unknown): unknown {
  if (!(err instanceof Pg25Error)) return err
  const m = /^(\w+) (must|needs)/.exec(err.message)
  if (m === null) return err
  const flag = `--${FLAG_OF[m[1]] ?? m[1]}`
  return new Pg25Error(err.code, flag + err.message.slice(m[1].length).replace('needs an image', 'needs --image'))
}

/** Opens every output before anything loads; if one is refused, those already opened are discarded. */
async function openAll (files: string[]): Promise<OutputFile[]> {
  const outs: OutputFile[] = []
  try {
    for (const f of files) outs.push(await openOutput(f))
    return outs
  } catch (err) {
    await Promise.all(outs.map(async o => await o.discard()))
    throw err
  }
}

/** Runs `pg25 "<prompt>" ...`; resolves to the exit code. */
export async function generateCommand (argv: string[], help: string, elsewhere: Record<string, string> = {}): Promise<number> {
  const { values, positionals, lists } = parseFlags('pg25', argv, GENERATE_FLAGS, elsewhere)
  if (values.help === true) { process.stdout.write(help); return 0 }
  if (values.version === true) { process.stdout.write(`${packageVersion()}\n`); return 0 }
  if (positionals.length !== 1) {
    process.stderr.write(`pg25: give exactly one prompt (quote it)${positionals.length > 1 ? `; got ${positionals.length} words: ${positionals.map(p => JSON.stringify(p)).join(' ')}` : ''}. See pg25 --help.\n`)
    return 2
  }
  const prompt = positionals[0]
  const started = Date.now()
  const image = str(values.image)
  const opts: GenerateOptions = {
    negativePrompt: str(values.negative),
    prompt2: str(values.prompt2),
    negativePrompt2: str(values.negative2),
    steps: int('steps', values.steps),
    guidanceScale: num('guidance', values.guidance),
    width: int('width', values.width),
    height: int('height', values.height),
    seed: int('seed', values.seed),
    scheduler: str(values.scheduler) as GenerateOptions['scheduler'],
    promptStyle: str(values['prompt-style']) as GenerateOptions['promptStyle'],
    count: int('count', values.count),
    image,
    strength: num('strength', values.strength),
    mask: str(values.mask)
  }
  try {
    checkGenerateOptions(prompt, opts)
  } catch (err) {
    throw asFlags(err)
  }
  const probed = image !== undefined ? await probeImage(image, `--image ${image}`) : undefined
  if (opts.mask !== undefined) await probeMask(opts.mask, probed)
  const loras = await parseLoRAFlags(lists.lora ?? [])
  const choice = chooseModel(values)
  const seed = opts.seed ?? randomInt(0, 2 ** 32)
  const outPath = str(values.output) ?? `pg25-${seed}.png`
  const format = formatOf(outPath)
  const files = numberedPaths(outPath, opts.count ?? 1)
  const interrupt = catchInterrupts(line => process.stderr.write(`pg25: ${line}\n`))
  let outs: OutputFile[]
  try {
    outs = await openAll(files)
  } catch (err) {
    interrupt.dispose()
    throw err
  }
  interrupt.onStop(async () => await Promise.all(outs.map(async o => await o.discard())))

  const quiet = values.quiet === true
  const loading = loadReporter(process.stderr)
  const stepping = stepReporter(process.stderr)
  let pipe: Pipeline | GenerateQueue | undefined
  try {
    // A notice (CPU fallback, a truncated prompt) goes on a line of its own, not after a bar drawn in place.
    const onWarning = (m: string): void => {
      if (quiet && m.startsWith(CPU_FALLBACK)) return
      loading.end()
      stepping.end()
      process.stderr.write(`${m}\n`)
    }
    const fleet = await openFleet(values, 'queue', { interrupt })
    const onProgress = quiet ? undefined : (p: LoadProgress): void => loading.update(p)
    pipe = fleet ?? await openPipeline(choice, { named: true, onWarning, onProgress, signal: interrupt.signal })
    loading.end()
    await loadLoRAFlags(pipe, loras) // refuses a fleet: its workers load LoRAs (pg25 worker --lora)
    const loaded = Date.now()
    // A fleet's jobs are cancelled by closing it (above); a local run by the signal.
    const signal = fleet === undefined ? interrupt.signal : undefined
    const r = await pipe.generate(prompt, { ...opts, seed, signal, onStep: quiet ? undefined : s => stepping.update(s) })
    stepping.end()
    // A local pipeline told onWarning already; a fleet's workers send their notices with the result.
    if (fleet !== undefined) for (const w of r.warnings ?? []) onWarning(w)
    const generated = Date.now()
    for (const [i, img] of r.images.entries()) await outs[i].commit(await encodeImage(img, format))
    const done = Date.now()
    process.stderr.write(`done in ${((done - started) / 1000).toFixed(1)} s · seed ${r.seed} · ${r.width}x${r.height} on ${pipe.device} · ${files.join(', ')}\n`)
    if (values.json === true) {
      process.stdout.write(JSON.stringify({
        files: files.map(f => path.resolve(f)),
        format,
        seed: r.seed,
        width: r.width,
        height: r.height,
        steps: opts.steps ?? DEFAULT_STEPS,
        guidanceScale: opts.guidanceScale ?? DEFAULT_GUIDANCE,
        ...(image !== undefined ? { image: path.resolve(image), strength: strengthOf(opts) } : {}),
        ...(opts.mask !== undefined ? { mask: path.resolve(opts.mask as string) } : {}),
        ...(loras.length > 0 ? { loras: Object.fromEntries(loras.map(l => [l.name, l.scale])) } : {}),
        count: r.images.length,
        device: pipe.device,
        model: pipe.device === 'fleet' ? 'fleet' : choice.model ?? 'demo',
        timings: { loadMs: loaded - started, generateMs: generated - loaded, writeMs: done - generated, totalMs: done - started }
      }) + '\n')
    }
    return 0
  } catch (err) {
    if (!interrupt.signal.aborted) throw err
    process.stderr.write('pg25: interrupted; no file was written\n')
    return INTERRUPTED
  } finally {
    interrupt.dispose()
    loading.end()
    stepping.end()
    await Promise.all(outs.map(async o => await o.discard()))
    await pipe?.dispose()
  }
}
