// The LoRAs loaded on one pipeline and their merge into the weights. The weights always hold
// original + Σ scale_i · (alpha_i / rank_i) · up_i · down_i over the active LoRAs; a change of the
// set or of a scale re-merges only the weights whose sum changed, each from its original as the model
// files hold it (native/models/lora.h says why merging beats a run-time branch). Calls run in the
// pipeline's queue, so weights never change under a running generate().
import os from 'node:os'
import path from 'node:path'
import { Pg25Error, native } from '../errors'
import { fmtMiB, type Room } from '../memory'
import { show, type LoRALoadOptions } from '../options'
import type { Runtime } from '../runtime'
import { MAX_LORA_SCALE, readLoRA, type LoRAModule, type WeightShapes } from './file'
import { LORA_COMPONENTS, type LoRAComponent } from './keys'

export type { LoRALoadOptions }

/** A loaded LoRA, as `Pipeline.loras` lists it. */
export interface LoRAInfo {
  name: string
  scale: number
  /** the file it was read from */
  source: string
  /** the weights it changes (UNet and text encoders together) */
  modules: number
}

export { MAX_LORA_SCALE }

export function checkScale (scale: unknown, what: string): number {
  if (typeof scale !== 'number' || !(Math.abs(scale) <= MAX_LORA_SCALE)) {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `${what} must be a number from -${MAX_LORA_SCALE} to ${MAX_LORA_SCALE}, got ${show(scale)}`)
  }
  return scale
}

/** Checks generate()'s `loras` option ({ name: scale }) before the call is queued; names are checked when it runs. */
export function checkScaleOverrides (loras: unknown): void {
  if (loras === undefined) return
  if (loras === null || typeof loras !== 'object' || Array.isArray(loras)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `loras must be an object of { name: scale }, got ${show(loras)}`)
  for (const [name, scale] of Object.entries(loras)) checkScale(scale, `loras[${JSON.stringify(name)}]`)
}

interface Loaded { id: number, name: string, source: string, scale: number, modules: LoRAModule[] }

export class LoRAs {
  private readonly loaded = new Map<string, Loaded>()
  /** per weight (`component/weight`): the contributions merged into it now, as a signature ('' or absent: none) */
  private readonly applied = new Map<string, string>()
  private shapes: WeightShapes | undefined
  private nextId = 0

  constructor (private readonly rt: Runtime, private readonly ids: Record<LoRAComponent, number>, private readonly memoryLimit?: number) {}

  list (): LoRAInfo[] {
    return [...this.loaded.values()].map(l => ({ name: l.name, scale: l.scale, source: l.source, modules: l.modules.length }))
  }

  private weightShapes (): WeightShapes {
    const shapesOf = (c: LoRAComponent): Record<string, number[]> => this.rt.call(() => this.rt.engine.weightShapes(this.ids[c]))
    this.shapes ??= Object.fromEntries(LORA_COMPONENTS.map(c => [c, shapesOf(c)])) as WeightShapes
    return this.shapes
  }

  /** Host memory a LoRA may take: what is free, and on the CPU no more than memoryLimit leaves beside the model. */
  private room (): Room {
    const free = os.freemem()
    const left = this.rt.device === 'cpu' && this.memoryLimit !== undefined ? this.memoryLimit - this.rt.engine.bytesInUse() : Infinity
    if (left < free) return { bytes: left, text: `memoryLimit leaves ${fmtMiB(left)} beside the model` }
    return { bytes: free, text: `only ${fmtMiB(free)} of host memory is free` }
  }

  /** Reads and checks a LoRA file against the model; nothing changes until `add`. */
  async read (file: string, options: LoRALoadOptions): Promise<Loaded> {
    if (options === null || typeof options !== 'object') throw new Pg25Error('PG25_INVALID_ARGUMENT', `LoRA options must be an object, got ${show(options)}`)
    const name = options.name ?? path.basename(file).replace(/\.safetensors$/i, '')
    if (typeof name !== 'string' || name === '' || name.length > 200) throw new Pg25Error('PG25_INVALID_ARGUMENT', `a LoRA name must be a non-empty string of at most 200 characters, got ${show(name)}`)
    const scale = checkScale(options.scale ?? 1, 'the LoRA scale')
    const modules = await readLoRA(file, this.weightShapes(), this.room())
    return { id: this.nextId++, name, source: path.resolve(file), scale, modules }
  }

  /** Adds a LoRA read by `read` and merges it; on failure the pipeline is left as it was. */
  async add (lora: Loaded): Promise<void> {
    if (this.loaded.has(lora.name)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `a LoRA named ${JSON.stringify(lora.name)} is already loaded; unload it first or pass another { name }`)
    this.loaded.set(lora.name, lora)
    await this.applyOrRestore(() => this.loaded.delete(lora.name))
  }

  async setScale (name: string, scale: number): Promise<void> {
    const l = this.get(name)
    const before = l.scale
    l.scale = scale
    await this.applyOrRestore(() => { l.scale = before })
  }

  async remove (name: string): Promise<void> {
    const l = this.get(name)
    this.loaded.delete(name)
    await this.applyOrRestore(() => this.loaded.set(name, l))
  }

  private get (name: string): Loaded {
    const l = this.loaded.get(name)
    if (l === undefined) {
      const names = [...this.loaded.keys()].map(n => JSON.stringify(n)).join(', ')
      throw new Pg25Error('PG25_INVALID_ARGUMENT', `no LoRA named ${JSON.stringify(name)} is loaded (${names === '' ? 'none is' : `loaded: ${names}`})`)
    }
    return l
  }

  /** Merges the registry's state; if that fails, undoes the registry change and merges back to the state before. */
  private async applyOrRestore (undo: () => void): Promise<void> {
    try {
      await this.apply()
    } catch (err) {
      undo()
      await this.apply().catch(() => {})
      throw err
    }
  }

  /**
   * Brings the weights to the loaded LoRAs at their scales, with `overrides` ({ name: scale }) for
   * this call; weights whose sum is already merged are left alone.
   */
  async apply (overrides: Record<string, number> = {}): Promise<void> {
    for (const name of Object.keys(overrides)) this.get(name)
    const want = new Map<string, Array<{ m: LoRAModule, s: number, id: number }>>()
    for (const l of this.loaded.values()) {
      const s = overrides[l.name] ?? l.scale
      if (s === 0) continue
      for (const m of l.modules) {
        const key = `${m.component}/${m.weight}`
        want.set(key, [...(want.get(key) ?? []), { m, s, id: l.id }])
      }
    }
    type Update = { name: string, rank: number, up?: Float32Array, down?: Float32Array }
    const updates: Record<LoRAComponent, Update[]> = { unet: [], text_encoder: [], text_encoder_2: [] }
    const next = new Map<string, string>()
    for (const key of new Set([...want.keys(), ...this.applied.keys()])) {
      const parts = want.get(key) ?? []
      const sig = parts.map(p => `${p.id}:${p.s}`).join(',')
      if (sig !== '') next.set(key, sig)
      if ((this.applied.get(key) ?? '') === sig) continue
      const [component, weight] = [key.slice(0, key.indexOf('/')) as LoRAComponent, key.slice(key.indexOf('/') + 1)]
      updates[component].push(parts.length === 0 ? { name: weight, rank: 0 } : { name: weight, ...stack(parts) })
    }
    try {
      for (const c of LORA_COMPONENTS) {
        if (updates[c].length > 0) await native(async () => await this.rt.call(() => this.rt.engine.mergeLoRA(this.ids[c], updates[c])))
      }
    } catch (err) {
      // Some weights may hold the new sums, some the old: mark every weight this call touched as
      // unknown so that the next apply merges each of them again.
      for (const c of LORA_COMPONENTS) for (const u of updates[c]) this.applied.set(`${c}/${u.name}`, '?')
      throw err
    }
    this.applied.clear()
    for (const [k, v] of next) this.applied.set(k, v)
  }
}

/** The LoRAs of one weight stacked along the rank axis: up [out, Σr] with each scale folded in, down [Σr, k]. */
function stack (parts: Array<{ m: LoRAModule, s: number }>): { rank: number, up: Float32Array, down: Float32Array } {
  const rank = parts.reduce((a, p) => a + p.m.rank, 0)
  const out = parts[0].m.up.length / parts[0].m.rank
  const k = parts[0].m.down.length / parts[0].m.rank
  let up: Float32Array
  let down: Float32Array
  try {
    up = new Float32Array(out * rank)
    down = new Float32Array(rank * k)
  } catch (err) {
    // V8 refuses an array it cannot allocate with a RangeError: say what it was for.
    const what = `merging LoRAs of rank ${rank} into "${parts[0].m.weight}"`
    throw new Pg25Error('PG25_OUT_OF_MEMORY', `${what}: no memory for the stacked ${out}x${rank} and ${rank}x${k} arrays`, { cause: err })
  }
  let at = 0
  for (const { m, s } of parts) {
    const c = s * m.scale
    for (let o = 0; o < out; o++) for (let a = 0; a < m.rank; a++) up[o * rank + at + a] = c * m.up[o * m.rank + a]
    down.set(m.down, at * k)
    at += m.rank
  }
  return { rank, up, down }
}
