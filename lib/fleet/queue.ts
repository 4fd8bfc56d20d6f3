// The fleet's client: generate() as on a Pipeline, run by whichever worker takes the job. Results
// come back through the queue's event stream (with a periodic look at the job, so that an event
// missed over a reconnect, or a job lost with a Redis that restarted empty, cannot hang a caller).
import { randomUUID } from 'node:crypto'
import { Queue, QueueEvents } from 'bullmq'
import type { Redis } from 'ioredis'
import { abortError, Pg25Error } from '../errors'
import { show, type GenerateOptions, type GenerateResult, type Size, type StepInfo } from '../options'
import { fromFailure, fromProgress, fromResult, toJobData, type FleetResult } from './job'
import { checkName, connect, DEFAULT_PREFIX, DEFAULT_QUEUE, FleetKeys, hangUp, quietErrors, within, type RedisTarget } from './redis'
import { liveWorkers, type WorkerInfo } from './registry'

/** How long finished jobs stay in Redis: seconds since they finished, and/or how many are kept. */
export interface KeepJobs { age?: number, count?: number }

export interface GenerateQueueOptions {
  /** the Redis the fleet shares: a `redis://host:6379` URL or ioredis options */
  redis: RedisTarget
  /** the BullMQ queue name (default 'pg25') */
  queue?: string
  /** BullMQ's key prefix (default 'bull') */
  prefix?: string
  /**
   * Completed jobs kept (default `{ age: 3600, count: 1000 }`). A job's images are deleted as soon as
   * its caller has them; `age` also bounds how long unread images (a caller that went away) stay.
   */
  removeOnComplete?: KeepJobs
  /** failed jobs kept, with their reason (default `{ age: 86400, count: 1000 }`) */
  removeOnFail?: KeepJobs
  /** how often a waiting call looks at its job itself, besides the event stream (ms, default 5000) */
  checkMs?: number
  /** connection problems, one line each (default: none) */
  log?: (line: string) => void
}

interface Pending {
  resolve: (r: GenerateResult) => void
  reject: (e: Error) => void
  onStep?: (s: StepInfo) => void
  /** true once the job is in Redis (before that, a missing job is not a lost one) */
  added: boolean
}

/** A cancelled job keeps its cancel key this long (seconds): a worker taking it up later still sees it. */
const CANCEL_KEY_AGE = 3600
/** What GET /health and the pixel limit assume before any worker has announced its model. */
const ASSUMED_SIZE: Size = { width: 1024, height: 1024 }

function checkKeep (k: string, v: KeepJobs | undefined, def: Required<KeepJobs>): Required<KeepJobs> {
  if (v === undefined) return def
  const ok = (n: unknown): boolean => n === undefined || (Number.isInteger(n) && (n as number) >= 1)
  if (v === null || typeof v !== 'object' || !ok(v.age) || !ok(v.count)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `${k} must be { age?: seconds, count?: jobs } in positive integers, got ${show(v)}`)
  return { age: v.age ?? def.age, count: v.count ?? def.count }
}

/**
 * Submits generate jobs to a fleet of workers (`pg25 worker`, or startWorker) and waits for them.
 * `generate()` takes and returns what Pipeline.generate does (but `latents`); `onStep` follows the
 * job's progress and `signal` cancels the job: removed from the queue while it waits, stopped
 * between steps once it runs.
 *
 * ```ts
 * const fleet = new GenerateQueue({ redis: 'redis://10.0.0.5:6379' })
 * const { images, seed } = await fleet.generate('a cat in a spacesuit', { steps: 30, onStep: s => console.log(s.step) })
 * await fs.writeFile('cat.png', await images[0].toPNG())
 * await fleet.close()
 * ```
 */
export class GenerateQueue {
  /** what GET /health reports as the device */
  readonly device = 'fleet'
  /** requests the server lets through at once: the fleet queues them itself */
  readonly parallel = Infinity
  readonly name: string
  private readonly keys: FleetKeys
  private readonly redis: Redis
  private readonly queue: Queue
  private readonly events: Promise<QueueEvents>
  private readonly pending = new Map<string, Pending>()
  private readonly cancels = new Set<Promise<void>>()
  private readonly reading = new Set<string>()
  private readonly keepDone: Required<KeepJobs>
  private readonly keepFailed: Required<KeepJobs>
  private readonly checker: NodeJS.Timeout
  private size: Size | undefined
  private announced: string | undefined
  private reader: Redis | undefined
  private closed = false

  constructor (options: GenerateQueueOptions) {
    if (options === null || typeof options !== 'object') throw new Pg25Error('PG25_INVALID_ARGUMENT', 'GenerateQueue needs options with a redis URL')
    this.name = checkName('queue', options.queue ?? DEFAULT_QUEUE)
    const prefix = checkName('prefix', options.prefix ?? DEFAULT_PREFIX)
    this.keepDone = checkKeep('removeOnComplete', options.removeOnComplete, { age: 3600, count: 1000 })
    this.keepFailed = checkKeep('removeOnFail', options.removeOnFail, { age: 86400, count: 1000 })
    const checkMs = options.checkMs ?? 5000
    if (!(Number.isInteger(checkMs) && checkMs >= 1)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `checkMs must be a positive integer, got ${show(checkMs)}`)
    this.keys = new FleetKeys(prefix, this.name)
    const errors = quietErrors(options.log ?? (() => {}), 'redis')
    this.redis = connect(options.redis, errors.onError)
    this.redis.on('ready', errors.reset)
    this.queue = new Queue(this.name, { connection: this.redis, prefix })
    this.queue.on('error', errors.onError)
    this.events = this.listen(prefix, errors.onError)
    this.events.catch(() => {})
    let checking = false
    this.checker = setInterval(() => {
      if (checking) return
      checking = true
      this.check().catch(() => {}).finally(() => { checking = false })
    }, checkMs)
  }

  /** Reads the event stream from its current end, found before the reader starts, so no event falls in between. */
  private async listen (prefix: string, onError: (err: Error) => void): Promise<QueueEvents> {
    const last = await this.redis.xrevrange(`${prefix}:${this.name}:events`, '+', '-', 'COUNT', 1)
    // QueueEvents reads on a duplicate of the connection it is given: this one is ours, so close() can
    // hang it up for certain (BullMQ's own close can leave it reconnecting to a Redis that is down).
    this.reader = this.redis.duplicate()
    const reader = this.reader
    const source = new Proxy(this.redis, { get: (target, key) => key === 'duplicate' ? () => reader : Reflect.get(target, key) })
    const events = new QueueEvents(this.name, { connection: source, prefix, lastEventId: last[0]?.[0] ?? '0-0' })
    events.on('error', onError)
    events.on('progress', ({ jobId, data }) => { this.step(jobId, data) })
    events.on('completed', ({ jobId }) => { this.finish(jobId) })
    events.on('failed', ({ jobId, failedReason }) => { this.settle(jobId, fromFailure(failedReason)) })
    await events.waitUntilReady()
    return events
  }

  /** The fleet's model, as its workers last announced it ('fleet' before any has). */
  get model (): string {
    return this.announced ?? 'fleet'
  }

  /** The default image size of the fleet's model, as its workers last announced it (1024 x 1024 before). */
  get defaultSize (): Size {
    return this.size ?? ASSUMED_SIZE
  }

  /**
   * Queues one generation and waits for its result (the same shape as Pipeline.generate's).
   *
   * ```ts
   * const ac = new AbortController()
   * const r = await fleet.generate('a lighthouse at dusk', { seed: 7, signal: ac.signal, onStep: s => bar(s.step, s.steps) })
   * ```
   */
  async generate (prompt: string, options: GenerateOptions = {}): Promise<GenerateResult> {
    if (this.closed) throw new Pg25Error('PG25_DISPOSED', 'generate() called after close()')
    const data = await toJobData(prompt, options)
    const { signal, onStep } = options
    if (signal !== undefined && !(signal instanceof AbortSignal)) throw new Pg25Error('PG25_INVALID_ARGUMENT', 'signal must be an AbortSignal')
    if (onStep !== undefined && typeof onStep !== 'function') throw new Pg25Error('PG25_INVALID_ARGUMENT', 'onStep must be a function')
    // Connecting waits out a Redis that is down; the signal still ends the call.
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => { reject(abortError(signal)) }
      if (signal?.aborted) { onAbort(); return }
      signal?.addEventListener('abort', onAbort, { once: true })
      this.events.then(() => resolve(), reject).finally(() => signal?.removeEventListener('abort', onAbort))
    })
    if (this.closed) throw new Pg25Error('PG25_DISPOSED', 'the GenerateQueue was closed before this call was queued')
    // The id is ours, so the job is waited for before it exists: no event can come before its listener.
    const jobId = randomUUID()
    const entry = { added: false } as Pending
    const done = new Promise<GenerateResult>((resolve, reject) => { Object.assign(entry, { resolve, reject, onStep }) })
    this.pending.set(jobId, entry)
    const onAbort = (): void => {
      this.settle(jobId, abortError(signal))
      if (entry.added) this.cancel(jobId)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    // Not awaited: with Redis down the add waits for it, and the signal must still end the call.
    this.queue.add('generate', data, { jobId, attempts: 1, removeOnComplete: this.keepDone, removeOnFail: this.keepFailed }).then(() => {
      entry.added = true
      if (signal?.aborted === true || !this.pending.has(jobId)) this.cancel(jobId)
    }, (err: Error) => { this.settle(jobId, new Pg25Error('PG25_QUEUE', `queueing the job: ${err.message}`)) })
    try {
      return await done
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
  }

  /** The workers that announced themselves in the last few seconds, with what each runs. */
  async workers (): Promise<WorkerInfo[]> {
    const live = await liveWorkers(this.redis, this.keys)
    if (live.length > 0) {
      this.size = live[0].defaultSize
      this.announced = live[0].model
    }
    return live
  }

  /** Jobs by state in the queue (waiting counts prioritized ones too). */
  async counts (): Promise<{ waiting: number, active: number, delayed: number, failed: number, completed: number }> {
    const c = await this.queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed')
    return { waiting: c.waiting + c.prioritized, active: c.active, delayed: c.delayed, failed: c.failed, completed: c.completed }
  }

  /**
   * For GET /health: the queue's depth, this client's calls waiting for their jobs (`pending`) and the
   * live workers; `redis: 'unreachable'` when Redis does not answer in 2 s.
   */
  async health (): Promise<Record<string, unknown>> {
    try {
      const [counts, workers] = await within(Promise.all([this.counts(), this.workers()]), 2000, 'GET /health')
      return { fleet: { queue: this.name, redis: 'ok', ...counts, pending: this.pending.size, workers } }
    } catch {
      return { fleet: { queue: this.name, redis: 'unreachable', pending: this.pending.size } }
    }
  }

  /** Cancels the calls still waiting (their jobs too) and closes the connections. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.checker)
    for (const [jobId, p] of [...this.pending]) {
      this.settle(jobId, new Pg25Error('PG25_DISPOSED', 'the GenerateQueue was closed while this call waited'))
      if (p.added) this.cancel(jobId)
    }
    await within(Promise.all(this.cancels), 5000, 'cancelling jobs').catch(() => {})
    const events = await within(this.events, 1000, 'connecting').catch(() => undefined)
    await within(events?.close() ?? Promise.resolve(), 2000, 'closing').catch(() => {})
    if (this.reader !== undefined) hangUp(this.reader)
    await this.queue.close()
    await within(this.redis.quit(), 2000, 'closing').catch(() => {})
    hangUp(this.redis)
  }

  /** close(), by the name Pipeline uses: a server or CLI ends either runner alike. */
  async dispose (): Promise<void> {
    await this.close()
  }

  async [Symbol.asyncDispose] (): Promise<void> {
    await this.close()
  }

  private settle (jobId: string, outcome: Error | GenerateResult): void {
    const p = this.pending.get(jobId)
    if (p === undefined) return
    this.pending.delete(jobId)
    if (outcome instanceof Error) p.reject(outcome)
    else p.resolve(outcome)
  }

  private step (jobId: string, data: unknown): void {
    const p = this.pending.get(jobId)
    const info = fromProgress(data)
    if (p?.onStep === undefined || info === null) return
    try {
      p.onStep(info)
    } catch (err) {
      // As on a Pipeline: a throwing onStep ends the call with its error (and the job with it).
      this.settle(jobId, err as Error)
      this.cancel(jobId)
    }
  }

  /**
   * A completed job: its images are read, then deleted. Two commands, not one GETDEL: a command cut
   * off by a Redis restart is sent again on the reconnect, and only a plain read survives that.
   */
  private finish (jobId: string, gone = false): void {
    // The event and the periodic look may both see the job finish: one of them reads it.
    if (!this.pending.has(jobId) || this.reading.has(jobId)) return
    this.reading.add(jobId)
    const key = this.keys.result(jobId)
    this.redis.get(key).then(async text => {
      if (text !== null) this.redis.del(key).catch(() => {})
      if (text === null) {
        throw new Pg25Error('PG25_QUEUE', gone ?
          `job ${jobId} is gone from Redis (flushed, or restarted without persistence); run it again` :
          `job ${jobId} finished but its images expired from Redis before they were read`)
      }
      this.settle(jobId, await fromResult(JSON.parse(text) as FleetResult))
    }).catch(err => { this.settle(jobId, err instanceof Pg25Error ? err : new Pg25Error('PG25_QUEUE', `reading job ${jobId}'s result: ${(err as Error).message}`)) })
      .finally(() => this.reading.delete(jobId))
  }

  /** Stops a job: its cancel key (for a worker running it), then its removal (when it still waits). */
  private cancel (jobId: string): void {
    const key = this.keys.cancel(jobId)
    const p = (async () => {
      await this.redis.set(key, '1', 'EX', CANCEL_KEY_AGE)
      if (await this.queue.remove(jobId) === 1) await this.redis.del(key)
    })().catch(() => {}).finally(() => { this.cancels.delete(p) })
    this.cancels.add(p)
  }

  /**
   * Looks at each waited-for job: settles those whose events were missed, and those gone from Redis.
   * Also keeps defaultSize to what the live workers announce.
   */
  private async check (): Promise<void> {
    await this.workers()
    for (const [jobId, p] of [...this.pending]) {
      if (!p.added) continue
      const state = await this.queue.getJobState(jobId)
      if (state === 'completed') this.finish(jobId)
      else if (state === 'unknown') this.finish(jobId, true)
      else if (state === 'failed') this.settle(jobId, fromFailure((await this.queue.getJob(jobId))?.failedReason))
    }
  }
}
