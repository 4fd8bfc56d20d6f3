// Which model a command loads, and how: --model (a diffusers folder, a Hub id, or a single-file
// checkpoint with --config), else $PG25_MODEL, else the built-in demo model. The flags are checked
// before anything is read, so a typo never waits for a load.
import path from 'node:path'
import { ensureDemoModel } from '../demo/demo-model'
import { Pg25Error } from '../errors'
import { OFFLOADS, PRECISIONS, type LoadOptions, type Offload, type Precision } from '../options'
import { Pipeline } from '../pipeline'
import { isDevice, type Device } from '../runtime'
import { str, type Flags, type Values } from './args'

export const MODEL_FLAGS: Flags = {
  model: { type: 'string', short: 'm' },
  config: { type: 'string' },
  device: { type: 'string' },
  variant: { type: 'string' },
  precision: { type: 'string' },
  offload: { type: 'string' }
}

export const MODEL_HELP = `  -m, --model DIR|ID|FILE  a diffusers-format model folder, a Hugging Face Hub id (org/name: downloaded once
                           into the Hugging Face cache), or a single-file .safetensors checkpoint (with
                           --config); default: $PG25_MODEL, else the built-in demo model
      --config DIR|ID      for a single-file checkpoint: the diffusers-format folder or Hub id whose
                           configs and tokenizers go with it (its weights are not read)
      --device NAME        auto (default), cpu, cuda or cuda:N (GPU N)
      --variant fp16       load the fp16 weight files
      --precision P        CPU weights: auto (default: fp32 when it fits in memory, else half), fp32, bf16, fp16
      --offload WHEN       CPU: page idle components' weights out to a temporary file during a run: auto
                           (default: when a request would not fit in memory otherwise), always, never`

const DEMO_NOTICE = 'pg25: no --model given, so this runs the built-in demo model: Playground v2.5\'s architecture at a tiny size,\n' +
  'trained only on flat shapes and colours ("a red circle on a blue background"); it is not Playground v2.5\'s quality.\n' +
  'For real images point --model (or PG25_MODEL) at\n' +
  'playgroundai/playground-v2.5-1024px-aesthetic (a Hub id or a downloaded folder; see --help).\n'

const bad = (msg: string): never => { throw new Pg25Error('PG25_INVALID_ARGUMENT', msg) }

export interface ModelChoice {
  /** the folder or Hub id, or the single-file checkpoint; undefined: the demo model */
  model: string | undefined
  /** with a single-file checkpoint: the folder or Hub id of its configs */
  config: string | undefined
  device: Device
  variant: 'fp16' | undefined
  precision: Precision
  offload: Offload
}

/** Checks the model flags; reads nothing. An empty --model is a mistake, not the demo; an empty $PG25_MODEL is unset. */
export function chooseModel (values: Values): ModelChoice {
  const given = str(values.model)
  if (given === '') bad('--model must name a model folder, Hub id or .safetensors file, got ""')
  const model = given ?? (process.env.PG25_MODEL || undefined)
  const config = str(values.config)
  const single = model !== undefined && model.toLowerCase().endsWith('.safetensors')
  if (single && (config === undefined || config === '')) bad(`--model ${model} is a single-file checkpoint: give --config, the diffusers-format folder or Hub id with its configs and tokenizers`)
  if (!single && config !== undefined) bad('--config goes with a single-file checkpoint (--model file.safetensors)')
  const device = str(values.device) ?? 'auto'
  if (!isDevice(device)) bad(`--device must be auto, cpu, cuda or cuda:N, got ${JSON.stringify(device)}`)
  const variant = str(values.variant)
  if (variant !== undefined && variant !== 'fp16') bad(`--variant must be fp16, got ${JSON.stringify(variant)}`)
  const precision = str(values.precision) ?? 'auto'
  if (!(PRECISIONS as readonly string[]).includes(precision)) bad(`--precision must be ${PRECISIONS.join(', ')}, got ${JSON.stringify(precision)}`)
  const offload = str(values.offload) ?? 'auto'
  if (!(OFFLOADS as readonly string[]).includes(offload)) bad(`--offload must be ${OFFLOADS.join(', ')}, got ${JSON.stringify(offload)}`)
  return { model, config, device: device as Device, variant: variant as 'fp16' | undefined, precision: precision as Precision, offload: offload as Offload }
}

/**
 * Loads the chosen model (the built-in demo model when none was chosen, with a notice). `named`
 * puts the model's folder or file name into PNG parameters (the CLI's own files; a server leaves it out).
 */
type OpenOptions = Pick<LoadOptions, 'onProgress' | 'onWarning' | 'signal'> & { named?: boolean }

export async function openPipeline (c: ModelChoice, options: OpenOptions = {}): Promise<Pipeline> {
  let model = c.model
  if (model === undefined) {
    process.stderr.write(DEMO_NOTICE)
    model = await ensureDemoModel()
  }
  const load: LoadOptions = {
    device: c.device,
    variant: c.variant,
    precision: c.precision,
    offload: c.offload,
    modelName: options.named === true ? path.basename(path.resolve(model)).replace(/\.safetensors$/i, '') : undefined,
    onWarning: options.onWarning ?? (m => process.stderr.write(`${m}\n`)),
    onProgress: options.onProgress,
    signal: options.signal
  }
  if (c.config !== undefined) return await Pipeline.fromSingleFile(model, { ...load, config: c.config })
  return await Pipeline.fromPretrained(model, load)
}
