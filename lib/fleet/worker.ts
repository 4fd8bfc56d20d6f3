// A fleet worker: takes generate jobs from a BullMQ queue and runs them on one pipeline (one process per
// GPU). Each job's data is the server's JSON body and is checked the same way; a bad one fails alone.
import { randomUUID } from 'node:crypto'
import os from 'node:os'
import { UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq'
import { AbortError, Pg25Error } from '../errors'
import { show } from '../options'
import type { Pipeline } from '../pipeline'
import { DEFAULT_MAX_PIXELS } from '../server/api'
import { requestPixels } from '../server/request'
import { failureReason, readJobData, toProgress, toResult, type FleetReturn } from './job'
import { checkName, connect, DEFAULT_PREFIX, DEFAULT_QUEUE, DEFAULT_RESULT_AGE, FleetKeys, hangUp, quietErrors, within, type RedisTarget } from './redis'
import { announce, type WorkerInfo } from './registry'

export interface WorkerOptions {
  /** the Redis the fleet shares: a `redis://host:6379` URL or ioredis options */
  redis: RedisTarget
  /** the BullMQ queue name (default 'pg25') */
  queue?: string
  /** BullMQ's key prefix (default 'bull') */
  prefix?: string
  /**
   * Jobs taken at once (default 1). A pipeline runs one generation at a time, so more only overlap
   * one job's PNG encoding and transfers with the next one's run.
   */
  concurrency?: number
  /** most output pixels (width x height x count) a job may ask for (default 4 x 1024 x 1024) */
  maxPixels?: number
  /**
   * How long a job's lock lasts without renewal (ms, default 60 s). The worker renews it every half of
   * this from the event loop, which keeps turning during a run (the native work runs on other
   * threads), so runs of many minutes hold their lock. The lock lapses only when the process dies,
   * freezes, or cannot reach Redis for this long; then the job goes to another worker. Longer rides out
   * longer Redis outages without running a job twice; shorter recovers a crashed worker's job sooner.
   */
  lockDurationMs?: number
  /** how often workers look for jobs whose lock lapsed (ms, default 30 s) */
  stalledIntervalMs?: number
  /**
   * Times a job may lose its worker and be run again (default 1): a job that kills every worker it
   * lands on (a crash in native code) fails after taking down two, instead of the whole fleet.
   */
  maxStalledCount?: number
  /** how often a running job's cancellation key is looked at (ms, default 500) */
  cancelPollMs?: number
  /** how often the worker announces itself for GET /health (ms, default 5 s; it counts as gone after 3 misses) */
  heartbeatMs?: number
  /** the model's name for the announcement (default: the pipeline's, its Hub id or folder name) */
  model?: string
  /** one line per job and per connection problem (default: none) */
  log?: (line: string) => void
}

export interface FleetWorker {
  /** this worker's id in the registry: host, pid and a random part */
  readonly id: string
  /** jobs running now */
  readonly running: number
  readonly completed: number
  readonly failed: number
  /**
   * Stops taking jobs and waits for the running ones; past `graceMs` (default 60 s) it stops them
   * between steps and gives them back to the queue, where another worker takes them up.
   */
  close(graceMs?: number): Promise<void>
}

// Why a run's controller aborted: its client cancelled it, or the worker is shutting down past its bound.
const CANCELLED = 'cancelled by its client'
const GIVE_BACK = 'given back: the worker is shutting down'
const LOST = 'lost: the job is gone from Redis, or another worker took it over'

const positive = (k: string, v: unknown): void => {
  if (v !== undefined && !(Number.isInteger(v) && (v as number) >= 1)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `${k} must be a positive integer, got ${show(v)}`)
}

/** The age a job's result keeps in Redis: the job's removeOnComplete age when it has one. */
function resultAge (job: Job): number {
  const age = (job.opts.removeOnComplete as { age?: unknown } | undefined)?.age
  return typeof age === 'number' && age >= 1 ? Math.ceil(age) : DEFAULT_RESULT_AGE
}

/**
 * Runs generate jobs from a BullMQ queue on `pipe` until close(). Jobs carry the JSON body that
 * `pg25 serve` accepts; progress is reported through the job, images go to a Redis key for the
 * client (see GenerateQueue). Connection losses are retried, never fatal.
 *
 * ```ts
 * const pipe = await Pipeline.fromPretrained(dir, { device: 'cuda:1' })
 * const worker = await startWorker(pipe, { redis: 'redis://10.0.0.5:6379', queue: 'pg25' })
 * process.once('SIGTERM', () => { worker.close(60_000).then(() => pipe.dispose()) })
 * ```
 */
export async function startWorker (pipe: Pipeline, options: WorkerOptions): Promise<FleetWorker> {
  if (options === null || typeof options !== 'object') throw new Pg25Error('PG25_INVALID_ARGUMENT', 'startWorker needs options with a redis URL')
  for (const k of ['concurrency', 'maxPixels', 'lockDurationMs', 'stalledIntervalMs', 'cancelPollMs', 'heartbeatMs'] as const) positive(k, options[k])
  if (options.maxStalledCount !== undefined && !(Number.isInteger(options.maxStalledCount) && options.maxStalledCount >= 0)) {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `maxStalledCount must be a non-negative integer, got ${show(options.maxStalledCount)}`)
  }
  const queue = checkName('queue', options.queue ?? DEFAULT_QUEUE)
  const prefix = checkName('prefix', options.prefix ?? DEFAULT_PREFIX)
  const keys = new FleetKeys(prefix, queue)
  const log = options.log ?? (() => {})
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS
  const concurrency = options.concurrency ?? 1
  const id = `${os.hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`
  const errors = quietErrors(log, 'redis')
  const redis = connect(options.redis, errors.onError)
  redis.on('ready', errors.reset)

  const active = new Map<string, AbortController>()
  const counts = { completed: 0, failed: 0 }

  const run = async (job: Job, token: string | undefined): Promise<FleetReturn> => {
    const jobId = job.id!
    const ac = new AbortController()
    active.set(jobId, ac)
    const started = Date.now()
    log(`job ${jobId}: started`)
    try {
      const { request, preview } = readJobData(job.data)
      const pixels = await requestPixels(request.options, pipe.defaultSize)
      if (pixels !== null && pixels > maxPixels) throw new Pg25Error('PG25_INVALID_ARGUMENT', `the job asks for ${pixels} output pixels (width x height x count); this worker allows ${maxPixels}`)
      if (await redis.exists(keys.cancel(jobId)) === 1) throw new AbortError(CANCELLED)
      let progress: Promise<unknown> = Promise.resolve()
      const r = await pipe.generate(request.prompt, {
        ...request.options,
        preview,
        signal: ac.signal,
        // Not awaited: a step never waits for Redis. Progress of a job that is gone is dropped.
        onStep: s => { progress = job.updateProgress(toProgress(s)).catch(() => {}) }
      })
      await progress
      const result = await toResult(r, request.metadata)
      await redis.set(keys.result(jobId), JSON.stringify(result), 'EX', resultAge(job))
      counts.completed++
      log(`job ${jobId}: done in ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${r.seed}, ${r.width}x${r.height}${r.images.length > 1 ? ` x ${r.images.length}` : ''})`)
      return { seed: r.seed, width: r.width, height: r.height, images: result.images.length, result: keys.result(jobId) }
    } catch (err) {
      if (ac.signal.reason === LOST) {
        // Nothing to report to: BullMQ finds the lock gone and leaves the job to whoever holds it now.
        log(`job ${jobId}: stopped: ${LOST}`)
        throw new Error(LOST)
      }
      if (ac.signal.reason === GIVE_BACK) {
        // Past the shutdown bound: back to the queue for another worker (BullMQ's manual move-to-wait).
        await job.moveToWait(token)
        log(`job ${jobId}: given back to the queue (shutting down)`)
        throw new WaitingError()
      }
      counts.failed++
      const reason = failureReason(ac.signal.reason === CANCELLED ? new AbortError(CANCELLED) : err)
      log(`job ${jobId}: failed: ${reason}`)
      // Every failure here comes from the job itself (its payload, its size, its cancellation):
      // running it again would fail again, so it is not retried.
      throw new UnrecoverableError(reason)
    } finally {
      active.delete(jobId)
    }
  }

  // Cancellation: a client sets the job's cancel key; while jobs run, the keys are looked at here.
  let polling = false
  const poll = setInterval(() => {
    if (polling || active.size === 0) return
    polling = true
    const ids = [...active.keys()]
    redis.mget(ids.map(j => keys.cancel(j))).then(found => {
      found.forEach((v, i) => { if (v !== null) active.get(ids[i])?.abort(CANCELLED) })
    }, () => {}).finally(() => { polling = false })
  }, options.cancelPollMs ?? 500)

  const worker = new Worker(queue, run, {
    connection: redis,
    prefix,
    concurrency,
    lockDuration: options.lockDurationMs ?? 60_000,
    stalledInterval: options.stalledIntervalMs ?? 30_000,
    maxStalledCount: options.maxStalledCount ?? 1,
    // Moving a finished job on after a failed Redis call: soon, not BullMQ's 15 s.
    runRetryDelay: 1000,
    autorun: false
  })
  worker.on('error', err => errors.onError(err))
  // Redis says the lock is not ours (not merely unreachable): running on would be wasted work.
  worker.on('lockRenewalFailed', (ids: string[]) => { for (const j of ids) active.get(j)?.abort(LOST) })

  const info = (): WorkerInfo => ({
    id,
    host: os.hostname(),
    pid: process.pid,
    device: pipe.device,
    model: options.model ?? pipe.model,
    defaultSize: pipe.defaultSize,
    concurrency,
    running: active.size,
    completed: counts.completed,
    failed: counts.failed
  })
  const registry = announce(redis, keys, info, options.heartbeatMs ?? 5000)
  await within(worker.waitUntilReady(), 30_000, `connecting to Redis for queue ${queue}`).catch(async err => {
    clearInterval(poll)
    await registry.stop()
    await worker.close(true)
    redis.disconnect()
    throw err
  })
  worker.run().catch(err => errors.onError(err as Error))
  log(`worker ${id} on ${pipe.device}, queue ${queue}: ready`)

  let closing: Promise<void> | undefined
  const bounds: NodeJS.Timeout[] = []
  return {
    id,
    get running () { return active.size },
    get completed () { return counts.completed },
    get failed () { return counts.failed },
    async close (graceMs = 60_000) {
      // A later call with a shorter grace (a second SIGTERM) gives the jobs back sooner.
      bounds.push(setTimeout(() => { for (const ac of active.values()) ac.abort(GIVE_BACK) }, graceMs).unref())
      closing ??= (async () => {
        try {
          await worker.close()
        } finally {
          bounds.forEach(clearTimeout)
          clearInterval(poll)
        }
        await registry.stop()
        await within(redis.quit(), 5000, 'closing the Redis connection').catch(() => {})
        hangUp(redis)
      })()
      await closing
    }
  }
}
