// `--lora FILE[:SCALE]` (repeatable) for pg25, pg25 serve and pg25 worker: parsed and the files checked
// (a Hub id fetched) before the model loads, then loaded into the pipeline, each named by its file name
// or Hub repo name (requests to a server name them so: {"loras": {"pixel-art-xl": 0.6}}).
import { Pg25Error } from '../errors'
import { requireRegularFile } from '../io/regular-file'
import { checkScale } from './lora'
import { resolveLoRASource } from './source'

export interface LoRAFlag { file: string, scale: number, name: string }

export const LORA_HELP = `      --lora FILE[:SCALE]  merge a LoRA .safetensors (kohya/A1111 or diffusers/PEFT) at SCALE (default 1);
                           repeat it to stack several. Its name is the file name without .safetensors.
                           FILE may be a Hub id (org/name, its only .safetensors file), named by its repo name`

/** The flags' values, checked: files that are regular files, scales in range, names unique. */
export async function parseLoRAFlags (values: string[]): Promise<LoRAFlag[]> {
  const out: LoRAFlag[] = []
  for (const v of values) {
    // FILE:SCALE when what follows the last colon is a number; a path may hold colons of its own.
    const m = /^(.+):([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)$/i.exec(v)
    const file = m === null ? v : m[1]
    const scale = checkScale(m === null ? 1 : Number(m[2]), `--lora ${v}: the scale`)
    // A Hub id (org/name, never a colon) is fetched now, before the model loads, as a file is checked now.
    const src = await resolveLoRASource(file)
    await requireRegularFile(src.file, '--lora file', 'PG25_NOT_FOUND')
    const name = src.name
    if (out.some(l => l.name === name)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `--lora ${v}: another --lora has the name ${JSON.stringify(name)}; rename one of the files`)
    out.push({ file: src.file, scale, name })
  }
  return out
}

/** Loads the LoRAs into a pipeline (anything with loadLoRA: a fleet queue has none and is refused). */
export async function loadLoRAFlags (pipe: object, loras: LoRAFlag[]): Promise<void> {
  if (loras.length === 0) return
  if (!('loadLoRA' in pipe)) throw new Pg25Error('PG25_INVALID_ARGUMENT', '--lora needs a model loaded here; with --redis the workers load LoRAs (pg25 worker --lora)')
  const target = pipe as { loadLoRA: (file: string, o: { name: string, scale: number }) => Promise<unknown> }
  for (const l of loras) await target.loadLoRA(l.file, { name: l.name, scale: l.scale })
}
