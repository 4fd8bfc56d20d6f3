// A lock file per blob, so two processes fetching the same model never write one partial file at
// once. Node has no flock(), so the lock is a file created exclusively (O_EXCL) holding its owner's pid
// and host; the owner refreshes its mtime while it works, and a waiter takes over a lock whose owner
// is dead (same host) or that nobody refreshed for STALE_MS (another host, or a frozen process).
// The sha256 check after each download is the last line of defence should a lock ever be broken, or
// should an old huggingface_hub (which flocks its own lock file and also writes `<etag>.incomplete`)
// fetch the same blob at the same moment.
import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AbortError } from '../errors'

const REFRESH_MS = 2_000
const STALE_MS = 30_000
const POLL_MS = 150

export interface HeldLock { release: () => Promise<void> }

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Whether the lock at `file` (with content `owner`, last touched `mtimeMs`) has been abandoned. */
function abandoned (owner: string, mtimeMs: number): boolean {
  const [pid, host] = owner.split(' ')
  if (host === os.hostname() && Number(pid) > 0 && !alive(Number(pid))) return true
  return Date.now() - mtimeMs > STALE_MS
}

/**
 * Takes the lock at `file`, waiting while another process holds it. `whileWaiting` is called at each
 * poll (to report the other process's progress). Rejects with AbortError when `signal` aborts.
 */
export async function acquireLock (file: string, signal?: AbortSignal, whileWaiting?: () => Promise<void>): Promise<HeldLock> {
  await fs.mkdir(path.dirname(file), { recursive: true })
  const me = `${process.pid} ${os.hostname()} ${randomBytes(4).toString('hex')}`
  for (;;) {
    if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason })
    try {
      await fs.writeFile(file, me, { flag: 'wx' })
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const [owner, st] = await Promise.all([fs.readFile(file, 'utf8').catch(() => null), fs.stat(file).catch(() => null)])
    if (owner !== null && st !== null && abandoned(owner, st.mtimeMs)) {
      // Moved aside, not unlinked: of several waiters only one wins the rename. Should a slow waiter move a
      // lock that was renewed meanwhile, the sha256 check after the download still guards the blob.
      const aside = `${file}.${randomBytes(4).toString('hex')}.stale`
      await fs.rename(file, aside).then(async () => await fs.unlink(aside)).catch(() => {})
      continue
    }
    await whileWaiting?.()
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
  const refresh = setInterval(() => { const now = new Date(); fs.utimes(file, now, now).catch(() => {}) }, REFRESH_MS)
  refresh.unref()
  return {
    release: async () => {
      clearInterval(refresh)
      // Remove it only if it is still ours.
      if (await fs.readFile(file, 'utf8').catch(() => null) === me) await fs.unlink(file).catch(() => {})
    }
  }
}
