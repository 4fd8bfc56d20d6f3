// A diffusers model directory: model_index.json, each component's config, and the weight files
// chosen the way diffusers chooses them (variant, sharded index, Paddle-format mirror files).
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { Pg25Error, type Pg25ErrorCode } from '../errors'
import { requireRegularFile } from '../io/regular-file'
import type { WeightAlias, WeightFile } from '../native'
import { exists, readJsonObject, readText } from './files'

export interface ModelIndex {
  file: string
  className: string
  forceZerosForEmptyPrompt: boolean
  /** component name -> [library, class] */
  components: Record<string, [string, string]>
}

export interface ComponentSource {
  name: string
  className: string
  configPath: string
  configText: string
  files: WeightFile[]
  /** names the weights are stored under, when they are not the diffusers names (single-file checkpoints) */
  aliases?: WeightAlias[]
  /** 'fp16' when the variant files were used */
  variant: string | null
}

export async function readModelIndex (dir: string): Promise<ModelIndex> {
  let st
  try {
    st = await fs.stat(dir)
  } catch {
    throw new Pg25Error('PG25_NOT_FOUND', `${dir}: model directory not found`)
  }
  if (!st.isDirectory()) throw new Pg25Error('PG25_NOT_FOUND', `${dir}: not a directory`)
  const file = path.join(dir, 'model_index.json')
  const raw = await readJsonObject(file, 'model_index.json')
  const className = raw._class_name
  if (typeof className !== 'string') throw new Pg25Error('PG25_BAD_CONFIG', `${file}: "_class_name" is missing`)
  if (className !== 'StableDiffusionXLPipeline') {
    throw new Pg25Error('PG25_UNSUPPORTED', `${file}: pipeline class "${className}" is not supported (StableDiffusionXLPipeline)`)
  }
  const components: Record<string, [string, string]> = {}
  for (const [key, value] of Object.entries(raw)) {
    if (key.startsWith('_') || !Array.isArray(value)) continue
    if (value.length !== 2) throw new Pg25Error('PG25_BAD_CONFIG', `${file}: "${key}" must be [library, class]`)
    if (value[0] === null && value[1] === null) continue
    if (typeof value[0] !== 'string' || typeof value[1] !== 'string') throw new Pg25Error('PG25_BAD_CONFIG', `${file}: "${key}" must be [library, class]`)
    components[key] = [value[0], value[1]]
  }
  const fz = raw.force_zeros_for_empty_prompt
  if (fz !== undefined && typeof fz !== 'boolean') throw new Pg25Error('PG25_BAD_CONFIG', `${file}: "force_zeros_for_empty_prompt" must be true or false`)
  return { file, className, forceZerosForEmptyPrompt: fz ?? true, components }
}

export function requireComponent (index: ModelIndex, name: string): [string, string] {
  const c = index.components[name]
  if (!c) throw new Pg25Error('PG25_NOT_FOUND', `${index.file}: component "${name}" is missing`)
  return c
}

/** A shard or weight file name taken from an index file must stay inside the component folder. */
async function safeJoin (dir: string, name: string, indexFile: string): Promise<string> {
  if (typeof name !== 'string' || name === '' || name.includes('/') || name.includes('\\') || name === '.' || name === '..' || path.isAbsolute(name) || name.includes('\0')) {
    throw new Pg25Error('PG25_BAD_CONFIG', `${indexFile}: shard name ${JSON.stringify(name)} must be a plain file name inside ${dir}`)
  }
  const full = path.join(dir, name)
  await requireInside(dir, full, `weight shard named in ${indexFile}`, 'PG25_BAD_WEIGHTS')
  return full
}

/**
 * Throws unless `full` resolves, through any symlinks, inside `dir`. Symlinks may also point into a
 * Hugging Face cache's blobs/ folder, never elsewhere: nothing outside the model is read, so no
 * byte of an unrelated file can reach an error message.
 */
export async function requireInside (dir: string, full: string, what: string, code: Pg25ErrorCode): Promise<void> {
  let real: string
  try {
    real = await fs.realpath(full)
  } catch {
    throw new Pg25Error('PG25_NOT_FOUND', `${full}: ${what} is missing`)
  }
  const realDir = await fs.realpath(dir)
  const hfRepo = hfCacheRepoRoot(realDir)
  if (!real.startsWith(realDir + path.sep) && !(hfRepo !== null && real.startsWith(path.join(hfRepo, 'blobs') + path.sep))) {
    throw new Pg25Error(code, `${full}: ${what} resolves outside the model directory (${real})`)
  }
}

function hfCacheRepoRoot (dir: string): string | null {
  const parts = dir.split(path.sep)
  const i = parts.lastIndexOf('snapshots')
  return i > 0 ? parts.slice(0, i).join(path.sep) : null
}

async function filesFromIndex (dir: string, indexFile: string, paddle: boolean): Promise<WeightFile[]> {
  const raw = await readJsonObject(indexFile, 'the sharded checkpoint index')
  const map = raw.weight_map
  if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new Pg25Error('PG25_BAD_CONFIG', `${indexFile}: "weight_map" must map tensor names to files`)
  const names = [...new Set(Object.values(map as Record<string, unknown>))]
  if (names.length === 0) throw new Pg25Error('PG25_BAD_CONFIG', `${indexFile}: "weight_map" is empty`)
  const files: WeightFile[] = []
  for (const n of names) {
    if (typeof n !== 'string') throw new Pg25Error('PG25_BAD_CONFIG', `${indexFile}: "weight_map" values must be file names`)
    const file = await safeJoin(dir, n, indexFile)
    await requireRegularFile(file, 'the weight shard', 'PG25_BAD_WEIGHTS')
    files.push({ path: file, paddle })
  }
  return files
}

/**
 * The weight files of one component folder. `library` is 'diffusers' or 'transformers' (the file
 * stems differ); `variant` 'fp16' prefers `*.fp16.safetensors`.
 */
export async function resolveWeightFiles (
  dir: string, library: string, variant: string | null, warn: (msg: string) => void
): Promise<{ files: WeightFile[], variant: string | null }> {
  const stem = library === 'transformers' ? 'model' : 'diffusion_pytorch_model'
  const paddleStem = library === 'transformers' ? 'model_state' : 'diffusion_paddle_model'
  const attempt = async (v: string | null): Promise<WeightFile[] | null> => {
    const sfx = v ? `.${v}` : ''
    for (const [s, paddle] of [[stem, false], [paddleStem, true]] as const) {
      const single = path.join(dir, `${s}${sfx}.safetensors`)
      if (await exists(single)) {
        await requireInside(dir, single, 'weight file', 'PG25_BAD_WEIGHTS')
        await requireRegularFile(single, 'the weight file', 'PG25_BAD_WEIGHTS')
        return [{ path: single, paddle }]
      }
      for (const idx of [`${s}.safetensors.index${sfx}.json`, `${s}${sfx}.safetensors.index.json`]) {
        const f = path.join(dir, idx)
        if (await exists(f)) return await filesFromIndex(dir, f, paddle)
      }
    }
    return null
  }
  const order: Array<string | null> = variant ? [variant, null] : [null, 'fp16']
  for (const v of order) {
    const files = await attempt(v)
    if (files) {
      if (variant && v !== variant) warn(`${dir}: no '${variant}' variant weights; using the full-precision files`)
      return { files, variant: v }
    }
  }
  if (await exists(path.join(dir, `${stem}.bin`)) || await exists(path.join(dir, `${stem}${variant ? '.' + variant : ''}.bin`))) {
    throw new Pg25Error('PG25_UNSUPPORTED', `${dir}: only PyTorch pickle (.bin) weights found; this package reads safetensors only`)
  }
  throw new Pg25Error('PG25_NOT_FOUND', `${dir}: no weight file found (looked for ${stem}${variant ? '.' + variant : ''}.safetensors, its sharded index, and ${paddleStem}*.safetensors)`)
}

/** A component's class and config.json, without its weights. */
export async function readComponentConfig (root: string, index: ModelIndex, name: string): Promise<ComponentSource> {
  const [, className] = requireComponent(index, name)
  await requireInside(root, path.join(root, name), `the ${name} folder`, 'PG25_BAD_CONFIG')
  const configPath = path.join(root, name, 'config.json')
  const configText = await readText(configPath, `the ${name} config`)
  return { name, className, configPath, configText, files: [], variant: null }
}

export async function resolveComponent (
  root: string, index: ModelIndex, name: string, variant: string | null, warn: (msg: string) => void
): Promise<ComponentSource> {
  const base = await readComponentConfig(root, index, name)
  const [library] = requireComponent(index, name)
  const { files, variant: used } = await resolveWeightFiles(path.join(root, name), library, variant, warn)
  return { ...base, files, variant: used }
}
