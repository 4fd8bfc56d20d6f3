// Whether this file system makes symbolic links that resolve. Linux's do; Wine 8's CreateSymbolicLinkW
// reports success and makes nothing, like Windows without developer mode refusing them, and there the
// Hub cache stores copies of its blobs (as huggingface_hub does), so the tests check copies instead.
import type { ExecutionContext } from 'ava'
import { mkdtempSync, promises as fs, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

function probe (): boolean {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg25-links-'))
  try {
    writeFileSync(path.join(dir, 'target'), 'x')
    symlinkSync('target', path.join(dir, 'link'))
    return readFileSync(path.join(dir, 'link'), 'utf8') === 'x'
  } catch {
    return false
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

export const SYMLINKS = probe()

/** `file` is the cache's `blob`: a link to it where links work, else a copy of its bytes. */
export async function sameFile (t: ExecutionContext, file: string, blob: string): Promise<void> {
  if (SYMLINKS) t.is(await fs.realpath(file), blob)
  else t.true((await fs.readFile(file)).equals(await fs.readFile(blob)), `${file}: a copy of ${blob}`)
}
