// Where the CLI writes its PNG. Checked before any model is loaded (a bad -o must not cost a whole
// generation), written to a temporary file in the same folder and renamed over the target, so a full
// disk or a crash never leaves a truncated PNG where a good one was.
import { constants, promises as fs } from 'node:fs'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { Pg25Error } from './errors'

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])

export interface OutputFile {
  /** Writes `bytes` to the temporary file and renames it over the target. */
  commit(bytes: Buffer): Promise<void>
  /** Removes the temporary file (after a failure). */
  discard(): Promise<void>
}

const refuse = (file: string, why: string): never => { throw new Pg25Error('PG25_INVALID_ARGUMENT', `-o ${file}: ${why}`) }

/**
 * Checks that `file` can be written: its folder exists and is writable, and the file is absent or an
 * existing PNG (which is replaced). Anything else that exists there (another kind of file, a folder,
 * a device such as /dev/full) is refused, so no file is lost to a mistyped -o.
 */
export async function openOutput (file: string): Promise<OutputFile> {
  let existing
  try {
    existing = await fs.lstat(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') refuse(file, (err as Error).message)
  }
  if (existing !== undefined) {
    if (existing.isDirectory()) refuse(file, 'is a directory')
    if (!existing.isFile()) refuse(file, 'exists and is not a regular file')
    const head = Buffer.alloc(8)
    const fh = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK)
    try {
      await fh.read(head, 0, 8, 0)
    } finally {
      await fh.close()
    }
    if (!head.equals(PNG_SIGNATURE)) refuse(file, 'exists and is not a PNG; refusing to replace it (remove it or choose another name)')
  }
  const dir = path.dirname(file)
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
  let fh: fs.FileHandle
  try {
    fh = await fs.open(tmp, 'wx')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return refuse(file, code === 'ENOENT' || code === 'ENOTDIR' ? `the folder ${dir} does not exist` : `cannot write in ${dir} (${(err as Error).message})`)
  }
  let open = true
  const close = async (): Promise<void> => { if (open) { open = false; await fh.close() } }
  const discard = async (): Promise<void> => {
    await close().catch(() => {})
    await fs.rm(tmp, { force: true })
  }
  return {
    discard,
    async commit (bytes) {
      try {
        await fh.writeFile(bytes)
        await fh.sync()
        await close()
        await fs.rename(tmp, file)
      } catch (err) {
        await discard()
        throw new Pg25Error('PG25_INTERNAL', `-o ${file}: writing failed (${(err as Error).message}); the file was left as it was`)
      }
    }
  }
}
