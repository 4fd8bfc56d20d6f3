// Reading a LoRA file: its tensors grouped into low-rank pairs, each matched to one of our weights and
// checked against its shape, with the scale (alpha / rank) each pair carries. Everything is checked
// before anything is returned, so a file that does not fit changes nothing.
import { open } from 'node:fs/promises'
import { Pg25Error, native } from '../errors'
import { requireRegularFile } from '../io/regular-file'
import { loadNative, type SafetensorsEntry } from '../native'
import { checkLoRAMemory, type Room } from '../memory'
import { keyRole, kohyaIndex, LORA_COMPONENTS, type LoRAComponent } from './keys'
import { peftConfigs } from './peft'

/** |scale| at most this: ComfyUI's bound too; past a few units a LoRA only breaks the image. */
export const MAX_LORA_SCALE = 100

/** One low-rank pair matched to a weight: the weight changes by scale x up · down. */
export interface LoRAModule {
  component: LoRAComponent
  /** our weight's name, e.g. `mid_block.attentions.0.proj_in.weight` */
  weight: string
  rank: number
  /** alpha / rank, as diffusers and kohya apply it (alpha / sqrt(rank) for rsLoRA files) */
  scale: number
  /** up [out, rank] and down [rank, k], row-major (k: the weight's elements per output row) */
  up: Float32Array
  down: Float32Array
}

/** Each component's weights: name -> shape (Engine.weightShapes). */
export type WeightShapes = Record<LoRAComponent, Record<string, number[]>>

interface Group {
  component: LoRAComponent | null, module: string, down?: SafetensorsEntry, up?: SafetensorsEntry, alpha?: SafetensorsEntry
}

const same = (a: number[], b: number[]): boolean => a.length === b.length && a.every((v, i) => v === b[i])
const shape = (s: number[]): string => `[${s.join(', ')}]`

/** The header's __metadata__ (string values), read after the native loader has validated the file. */
async function readMetadata (file: string): Promise<Record<string, string>> {
  const fh = await open(file, 'r')
  try {
    const head = Buffer.alloc(8)
    await fh.read(head, 0, 8, 0)
    const n = Number(head.readBigUInt64LE(0))
    const json = Buffer.alloc(n)
    await fh.read(json, 0, n, 8)
    const meta = (JSON.parse(json.toString('utf8')) as Record<string, unknown>).__metadata__
    return meta !== null && typeof meta === 'object' ? meta as Record<string, string> : {}
  } finally {
    await fh.close()
  }
}

/**
 * Reads a LoRA `.safetensors` and matches it to the model (`weights`). Refuses, naming the tensor and
 * the module, a key that matches no module (PG25_BAD_WEIGHTS), a pair whose shapes disagree with the
 * weight (PG25_BAD_WEIGHTS), and LoRA variants that are not a plain up · down (PG25_UNSUPPORTED).
 */
export async function readLoRA (file: string, weights: WeightShapes, room?: Room): Promise<LoRAModule[]> {
  await requireRegularFile(file, 'the LoRA file', 'PG25_NOT_FOUND')
  const addon = loadNative()
  const entries = await native(async () => await addon.inspectSafetensors(file))
  const meta = await readMetadata(file)
  const peft = peftConfigs(file, meta)
  const bad = (msg: string): never => { throw new Pg25Error('PG25_BAD_WEIGHTS', `${file}: ${msg}`) }

  const groups = new Map<string, Group>()
  for (const e of entries) {
    const role = keyRole(e.name)
    if (role === null) bad(`tensor "${e.name}" is not a LoRA tensor (kohya lora_down/lora_up/alpha or PEFT lora_A/lora_B)`)
    if ('variant' in role!) throw new Pg25Error('PG25_UNSUPPORTED', `${file}: tensor "${e.name}" belongs to ${role.variant}, which this package does not merge (plain LoRA and LoCon only)`)
    const r = role as Exclude<typeof role, null | { variant: string }>
    const g = groups.get(r.group) ?? { component: r.component, module: r.module }
    if (g[r.part] !== undefined) bad(`tensors "${g[r.part]!.name}" and "${e.name}" are both the ${r.part} of module "${r.group}"`)
    g[r.part] = e
    groups.set(r.group, g)
  }
  if (groups.size === 0) bad('holds no LoRA tensors')

  const modules = Object.fromEntries(LORA_COMPONENTS.map(c => [c, Object.keys(weights[c]).filter(n => n.endsWith('.weight') && weights[c][n].length >= 2).map(n => n.slice(0, -'.weight'.length))])) as Record<LoRAComponent, string[]>
  const kohya = kohyaIndex(modules)
  const unmatched = [...groups.values()].filter(g => g.component === null ? !kohya.has(g.module) : weights[g.component][`${g.module}.weight`] === undefined)
  if (unmatched.length > 0) {
    const g = unmatched[0]
    const key = (g.down ?? g.up ?? g.alpha)!.name
    const what = g.component === null ? `module "${g.module}"` : `${g.component} module "${g.module}"`
    const share = unmatched.length === groups.size ? 'none of its modules match this model: is it a LoRA for another architecture?' : `${unmatched.length} of its ${groups.size} modules match nothing here`
    bad(`tensor "${key}" targets ${what}, which this model (SDXL UNet and CLIP text encoders) does not have; ${share}`)
  }

  const plan: Array<{
    component: LoRAComponent, weight: string, rank: number, alpha: SafetensorsEntry | number | undefined, pattern?: number,
    rs: boolean, down: SafetensorsEntry, up: SafetensorsEntry
  }> = []
  for (const g of groups.values()) {
    const target = g.component === null ? kohya.get(g.module)! : { component: g.component, module: g.module }
    const name = `${target.component} module "${target.module}"`
    if (g.down === undefined || g.up === undefined) bad(`module "${g.module}" has ${g.down ? 'a down' : g.up ? 'an up' : 'only an alpha'} tensor and no ${g.down ? 'up' : 'down'} tensor`)
    const down = g.down!
    const up = g.up!
    const w = weights[target.component][`${target.module}.weight`]
    const rank = down.shape[0]
    const [out, inC, kh = 1, kw = 1] = w
    const linearOk = same(down.shape, [rank, inC]) || same(down.shape, [rank, inC, 1, 1])
    const convOk = same(down.shape, [rank, inC, kh, kw]) || (kh === 1 && kw === 1 && same(down.shape, [rank, inC]))
    const downOk = w.length === 2 ? linearOk : convOk
    const upOk = same(up.shape, [out, rank]) || same(up.shape, [out, rank, 1, 1])
    if (!(rank >= 1) || !downOk || !upOk || w.length > 4) {
      bad(`"${down.name}" ${shape(down.shape)} and "${up.name}" ${shape(up.shape)} do not fit ${name}, whose weight is ${shape(w)} (down must be [rank, ${w.slice(1).join(', ')}], up [${out}, rank])`)
    }
    if (g.alpha !== undefined && g.alpha.shape.reduce((a, b) => a * b, 1) !== 1) bad(`alpha "${g.alpha.name}" ${shape(g.alpha.shape)} is not a single value`)
    const cfg = peft[target.component]
    const [alpha, pattern, rs] = [g.alpha ?? cfg?.alpha, cfg?.alphaFor(target.module), cfg?.rsLoRA === true]
    plan.push({ component: target.component, weight: `${target.module}.weight`, rank, alpha, pattern, rs, down, up })
  }

  const requests = plan.flatMap(p => [p.down, p.up, ...(typeof p.alpha === 'object' ? [p.alpha] : [])].map(e => ({ name: e.name, shape: e.shape, linear: false })))
  // Sizes from the header alone, checked before a byte is read: a sparse file can announce gigabytes.
  const numel = (e: SafetensorsEntry): number => e.shape.reduce((a, b) => a * b, 1)
  if (room !== undefined) checkLoRAMemory(file, requests.length, plan.map(p => numel(p.down) + numel(p.up)), room)
  const data = await native(async () => await addon.readTensors([{ path: file, paddle: false }], requests))
  let at = 0
  return plan.map(p => {
    const down = data[at++]
    const up = data[at++]
    const alpha = typeof p.alpha === 'object' ? data[at++][0] : p.pattern ?? p.alpha ?? p.rank
    if (!Number.isFinite(alpha)) bad(`the alpha of ${p.component} weight "${p.weight}" is not finite`)
    for (const [t, e] of [[down, p.down], [up, p.up]] as const) if (!t.every(Number.isFinite)) bad(`tensor "${e.name}" holds NaN or infinite values`)
    const scale = alpha / (p.rs ? Math.sqrt(p.rank) : p.rank)
    const bound = deltaBound(up, down, p.rank) * Math.abs(scale) * MAX_LORA_SCALE
    if (!(bound <= FLOAT32_MAX)) {
      bad(`${p.component} weight "${p.weight}": alpha ${alpha} x "${p.up.name}" · "${p.down.name}" can exceed float32's range ` +
        `(up to ${bound.toPrecision(3)} at scale ${MAX_LORA_SCALE}); the merged weight would not be finite`)
    }
    return { component: p.component, weight: p.weight, rank: p.rank, scale, up, down }
  })
}

const FLOAT32_MAX = 3.4028234663852886e38

/** An upper bound on |up · down| over all elements: Σ over the rank of max |up column| x max |down row|. */
function deltaBound (up: Float32Array, down: Float32Array, rank: number): number {
  const k = down.length / rank
  const upMax = new Float64Array(rank)
  for (let i = 0; i < up.length; i++) upMax[i % rank] = Math.max(upMax[i % rank], Math.abs(up[i]))
  let sum = 0
  for (let r = 0; r < rank; r++) {
    let m = 0
    for (let i = r * k; i < (r + 1) * k; i++) m = Math.max(m, Math.abs(down[i]))
    sum += upMax[r] * m
  }
  return sum
}
