// Which workers are alive: each worker renews a small key describing itself (expiring after three
// missed beats) and keeps its id in a set; readers drop the ids whose key has expired.
import type { Redis } from 'ioredis'
import type { Size } from '../options'
import type { FleetKeys } from './redis'

/** What a live worker says about itself (GET /health lists these). */
export interface WorkerInfo {
  id: string
  host: string
  pid: number
  /** where its pipeline runs: 'cpu', 'cuda', 'cuda:1', ... */
  device: string
  model: string
  /** its model's default output size */
  defaultSize: Size
  concurrency: number
  /** jobs running now */
  running: number
  completed: number
  failed: number
}

/** Announces `info()` every `everyMs` until stop(), which takes the announcement down. */
export function announce (redis: Redis, keys: FleetKeys, info: () => WorkerInfo, everyMs: number): { stop: () => Promise<void> } {
  const id = info().id
  const beat = async (): Promise<void> => {
    await redis.multi().set(keys.worker(id), JSON.stringify(info()), 'PX', 3 * everyMs).sadd(keys.workers, id).exec()
  }
  // A beat waits through a Redis outage; the next one is not started on top of it.
  let pending: Promise<void> | null = null
  const tick = (): void => { pending ??= beat().catch(() => {}).finally(() => { pending = null }) }
  tick()
  const timer = setInterval(tick, everyMs)
  return {
    stop: async () => {
      clearInterval(timer)
      await Promise.race([
        redis.multi().del(keys.worker(id)).srem(keys.workers, id).exec().catch(() => {}),
        new Promise(resolve => setTimeout(resolve, 2000).unref())
      ])
    }
  }
}

/** The live workers of a queue (and the registry cleared of those that stopped beating). */
export async function liveWorkers (redis: Redis, keys: FleetKeys): Promise<WorkerInfo[]> {
  const ids = await redis.smembers(keys.workers)
  if (ids.length === 0) return []
  const found = await redis.mget(ids.map(id => keys.worker(id)))
  const gone = ids.filter((_, i) => found[i] === null)
  if (gone.length > 0) await redis.srem(keys.workers, ...gone)
  const live: WorkerInfo[] = []
  for (const text of found) {
    if (text === null) continue
    try {
      live.push(JSON.parse(text) as WorkerInfo)
    } catch {}
  }
  return live.sort((a, b) => a.id.localeCompare(b.id))
}
