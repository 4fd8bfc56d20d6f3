// Redis for the fleet: one connection recipe for workers and clients, and the names of the few keys
// the fleet keeps beside BullMQ's own (cancellations, results, the worker registry).
import { Redis, type RedisOptions } from 'ioredis'
import { Pg25Error } from '../errors'
import { show } from '../options'

/** A Redis URL (`redis://host:6379`, `rediss://` for TLS, `/N` for database N) or ioredis options. */
export type RedisTarget = string | RedisOptions

/** BullMQ's default key prefix; every fleet key lives under `<prefix>:<queue>:`. */
export const DEFAULT_PREFIX = 'bull'
export const DEFAULT_QUEUE = 'pg25'

/** How long a finished job's images wait in Redis for their client when the job says nothing (seconds). */
export const DEFAULT_RESULT_AGE = 3600

/**
 * A connection that outlives Redis restarts: commands wait for the reconnect instead of failing after
 * a few retries (maxRetriesPerRequest null, which BullMQ's blocking reads need anyway), and reconnects
 * back off to at most 2 s, so a restarted Redis is found again within seconds.
 */
export function connect (target: RedisTarget, onError: (err: Error) => void): Redis {
  const options: RedisOptions = { maxRetriesPerRequest: null, retryStrategy: (times: number) => Math.min(100 * times, 2000) }
  let client: Redis
  if (typeof target === 'string') {
    if (!/^rediss?:\/\/[^\s]+$/.test(target)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `redis must be a redis:// or rediss:// URL, got ${show(target)}`)
    client = new Redis(target, options)
  } else if (target !== null && typeof target === 'object') {
    client = new Redis({ ...target, ...options })
  } else {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `redis must be a redis:// URL or ioredis options, got ${show(target)}`)
  }
  client.on('error', onError)
  return client
}

/**
 * Ends a connection for good. Its retry strategy goes first: a disconnect() that lands while a
 * reconnect attempt is under way can otherwise be outlived by that attempt, which then retries forever
 * (and keeps the process alive).
 */
export function hangUp (client: Redis): void {
  client.options.retryStrategy = () => null
  client.disconnect()
}

/**
 * A log for connection errors that says each distinct message once until the connection is back:
 * a Redis that is down for a minute must not write a line per reconnect attempt.
 */
export function quietErrors (log: (line: string) => void, what: string): { onError: (err: Error) => void, reset: () => void } {
  let last: string | undefined
  return {
    onError: (err: Error) => {
      if (err.message === last) return
      last = err.message
      log(`${what}: ${err.message}`)
    },
    reset: () => { last = undefined }
  }
}

export function checkName (what: string, v: unknown): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9_.-]{1,100}$/.test(v)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `${what} must be 1 to 100 letters, digits, '_', '.' or '-', got ${show(v)}`)
  return v
}

/** The fleet's own keys of one queue. */
export class FleetKeys {
  constructor (readonly prefix: string, readonly queue: string) {}
  private get base (): string { return `${this.prefix}:${this.queue}:pg25` }
  /** set by a client to stop a job; workers look for it while the job runs */
  cancel (jobId: string): string { return `${this.base}:cancel:${jobId}` }
  /** a finished job's images, read (and deleted) by its client, else expiring */
  result (jobId: string): string { return `${this.base}:result:${jobId}` }
  /** the set of worker ids that have announced themselves */
  get workers (): string { return `${this.base}:workers` }
  /** one worker's announcement, expiring unless renewed */
  worker (id: string): string { return `${this.base}:worker:${id}` }
}

/** Keeps `p` from waiting forever on a Redis that is down: rejects after `ms`. */
export async function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Pg25Error('PG25_QUEUE', `${what}: Redis did not answer within ${ms} ms`)), ms)
    })])
  } finally {
    clearTimeout(timer)
  }
}
