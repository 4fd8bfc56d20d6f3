// The built-in demo model: Playground v2.5's exact layout at a tiny size (about 8.5 MB of fp16 weights),
// trained by scripts/demo-model/train.py on a world of flat-coloured shapes. It ships in the package
// under models/demo, so the whole pipeline (text-to-image, img2img, inpainting) runs without a download.
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { Pg25Error } from '../errors'

/** The shipped model folder: this file runs from dist/lib/demo/, three levels under the package root. */
export const DEMO_MODEL_DIR = path.resolve(__dirname, '..', '..', '..', 'models', 'demo')

// Lists every model file with its SHA-256; shipped with the model, checked on each use.
const MANIFEST = 'pg25-demo-manifest.json'

async function fileHashes (dir: string, names: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const name of names) {
    const bytes = await fs.readFile(path.join(dir, name)).catch(() => null)
    if (bytes !== null) out[name] = createHash('sha256').update(bytes).digest('hex')
  }
  return out
}

async function manifest (dir: string): Promise<Record<string, string> | null> {
  try {
    return JSON.parse(await fs.readFile(path.join(dir, MANIFEST), 'utf8')) as Record<string, string>
  } catch {
    return null
  }
}

/** Whether `dir` holds every file of the manifest `want`, unchanged. */
async function intact (dir: string, want: Record<string, string>): Promise<boolean> {
  const have = await fileHashes(dir, Object.keys(want))
  return Object.keys(want).length > 0 && Object.entries(want).every(([f, h]) => have[f] === h)
}

/** A folder that is absent, empty, or a (damaged) demo model: anything else is not ours to delete. */
async function replaceable (dir: string): Promise<boolean> {
  const entries = await fs.readdir(dir).catch((): string[] => [])
  if (entries.length === 0 || entries.includes(MANIFEST)) return true
  const index = await fs.readFile(path.join(dir, 'model_index.json'), 'utf8').catch(() => '')
  return index.includes('"_pg25_demo"')
}

/** The shipped demo model's manifest, after checking that its files match it. */
async function shipped (): Promise<Record<string, string>> {
  const want = await manifest(DEMO_MODEL_DIR)
  if (want === null || !await intact(DEMO_MODEL_DIR, want)) {
    throw new Pg25Error('PG25_NOT_FOUND', `${DEMO_MODEL_DIR}: the built-in demo model is missing or damaged (its files do not match ${MANIFEST}); reinstall @pg25/native`)
  }
  return want
}

/**
 * The demo model's folder. With no `dir` (and no $PG25_DEMO_DIR) that is the folder shipped in the
 * package. Otherwise the shipped model is copied to `dir` (atomically), and a copy whose files no
 * longer match their recorded hashes (truncated, edited, half-deleted) is replaced.
 */
export async function ensureDemoModel (dir = process.env.PG25_DEMO_DIR): Promise<string> {
  const want = await shipped()
  if (dir === undefined || path.resolve(dir) === DEMO_MODEL_DIR) return DEMO_MODEL_DIR
  if (await intact(dir, want)) return dir
  await fs.mkdir(path.dirname(dir), { recursive: true })
  if (!await replaceable(dir)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `${dir}: exists and is not a demo model folder; refusing to replace it`)
  await fs.rm(dir, { recursive: true, force: true })
  const tmp = await fs.mkdtemp(`${dir}.tmp-`)
  for (const name of [...Object.keys(want), MANIFEST, 'README.md']) {
    await fs.mkdir(path.dirname(path.join(tmp, name)), { recursive: true })
    await fs.copyFile(path.join(DEMO_MODEL_DIR, name), path.join(tmp, name))
  }
  try {
    await fs.rename(tmp, dir)
  } catch (err) {
    // Another process finished first: keep its copy.
    await fs.rm(tmp, { recursive: true, force: true })
    if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  return dir
}
