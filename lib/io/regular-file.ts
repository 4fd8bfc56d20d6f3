// Opening only regular files. A FIFO or device named as a config, image or weight file would block a
// plain open() forever (in a libuv thread that nothing can interrupt), so files are opened
// non-blocking and checked with fstat before a byte is read.
import { constants, promises as fs } from 'node:fs'
import { Pg25Error, type Pg25ErrorCode } from '../errors'

export interface ReadOptions {
  /** what the file is, for messages ("the scheduler config") */
  what: string
  /** the code for a file that is missing, unreadable or not a regular file */
  code: Pg25ErrorCode
  /** refuse files larger than this many bytes */
  maxBytes?: number
}

export async function readRegularFile (file: string, o: ReadOptions): Promise<Buffer> {
  let fh: fs.FileHandle
  try {
    fh = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK)
  } catch (err) {
    const errno = (err as NodeJS.ErrnoException).code
    if (errno === 'ENOENT' || errno === 'ENOTDIR') throw new Pg25Error(o.code, `${file}: ${o.what} is missing`)
    throw new Pg25Error(o.code, `${file}: cannot read ${o.what} (${(err as Error).message})`)
  }
  try {
    const st = await fh.stat()
    if (!st.isFile()) throw new Pg25Error(o.code, `${file}: ${o.what} is not a regular file`)
    if (o.maxBytes !== undefined && st.size > o.maxBytes) throw new Pg25Error(o.code, `${file}: ${o.what} is ${st.size} bytes, over the ${o.maxBytes}-byte limit`)
    return await fh.readFile()
  } catch (err) {
    if (err instanceof Pg25Error) throw err
    throw new Pg25Error(o.code, `${file}: cannot read ${o.what} (${(err as Error).message})`)
  } finally {
    await fh.close()
  }
}

/** Throws unless `file` (followed through symlinks) is a regular file; for files native code opens. */
export async function requireRegularFile (file: string, what: string, code: Pg25ErrorCode): Promise<void> {
  let st
  try {
    st = await fs.stat(file)
  } catch (err) {
    throw new Pg25Error(code, `${file}: cannot read ${what} (${(err as Error).message})`)
  }
  if (!st.isFile()) throw new Pg25Error(code, `${file}: ${what} is not a regular file`)
}
