// Where a LoRA comes from: a local file, or a Hub id (`org/name`, when no such file exists) whose file is
// fetched into the Hugging Face cache as models are. Shared by Pipeline.loadLoRA and the --lora flags.
import { promises as fs } from 'node:fs'
import path from 'node:path'
import { Pg25Error } from '../errors'
import { isHubId } from '../hub/cache'
import { downloadFile } from '../hub/repo-file'
import type { LoRALoadOptions } from './lora'

/** A LoRA's local file and the name it gets unless one is given. */
export interface LoRASource { file: string, name: string }

const HUB_ONLY = ['weightName', 'revision', 'token'] as const

/** `fileOrId` as a local file; a Hub id is fetched (or found in the cache) first. */
export async function resolveLoRASource (fileOrId: string, o: Pick<LoRALoadOptions, typeof HUB_ONLY[number]> = {}): Promise<LoRASource> {
  const hub = isHubId(fileOrId) && !await fs.lstat(fileOrId).then(() => true, () => false)
  if (!hub) {
    const extra = HUB_ONLY.find(k => o[k] !== undefined)
    if (extra !== undefined) throw new Pg25Error('PG25_INVALID_ARGUMENT', `loadLoRA: ${extra} applies to a Hub id (org/name), and ${JSON.stringify(fileOrId)} is a file path`)
    return { file: fileOrId, name: path.basename(fileOrId).replace(/\.safetensors$/i, '') }
  }
  try {
    const file = await downloadFile(fileOrId, o.weightName, { revision: o.revision, token: o.token })
    return { file, name: fileOrId.slice(fileOrId.indexOf('/') + 1) }
  } catch (err) {
    // `loras/x.safetensors` has the form of a Hub id too: say that it is no file either.
    if (err instanceof Pg25Error && err.code === 'PG25_NOT_FOUND' && /\.safetensors$/i.test(fileOrId)) {
      throw new Pg25Error('PG25_NOT_FOUND', `${fileOrId}: no such file, nor a Hub repo of that id (${err.message})`, { cause: err })
    }
    throw err
  }
}
