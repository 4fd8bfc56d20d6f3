// The one table of error codes and what each means (native/core/error.h holds the native side's; test/native/binding-seam.test.ts
// checks that every native code is here).
export const ERROR_CODES = {
  PG25_NOT_FOUND: 'a directory, component, config or weight file is missing',
  PG25_BAD_CONFIG: 'malformed JSON, a missing key or a value of the wrong type',
  PG25_BAD_WEIGHTS: 'a safetensors file that fails validation, or a tensor of the wrong shape/dtype',
  PG25_MISSING_WEIGHTS: 'a tensor the graph needs is absent from the weight files',
  PG25_UNSUPPORTED: 'a model class, scheduler or config value this package does not implement',
  PG25_INVALID_ARGUMENT: 'a bad option passed to the API',
  PG25_DISPOSED: 'a call on a pipeline or tensor after dispose()',
  PG25_NO_DEVICE: "device 'cuda' asked for where no usable GPU and libraries are",
  PG25_OUT_OF_MEMORY: "a model or request that the device's memory cannot hold (refused before running)",
  PG25_NON_FINITE: 'a run produced NaN or infinite latents; no image is returned',
  PG25_NO_BINARY: "no usable compiled addon for this platform: the install step was skipped or failed, or the platform package's " +
    'binary crashed or lacked exports when checked in a child process; `npm rebuild @pg25/native`',
  PG25_QUEUE: "the fleet's queue failed a job: Redis unreachable past a bound, a job gone from Redis (flushed, or restarted without " +
    'persistence), a result expired before it was read, or a job that stalled its workers too often',
  PG25_MISSING_DEPENDENCY: "an optional peer dependency a subpath needs is not installed (the fleet's bullmq and ioredis)",
  PG25_INTERNAL: 'a failure inside this package (a bug: please report it)',
  PG25_HUB_AUTH: 'the Hub refused a gated or private model: no token, or one without access',
  PG25_HUB_NETWORK: 'the Hub could not be reached, timed out, or answered with a server error',
  PG25_HUB_CORRUPT: "a downloaded file's size or hash differs from what the Hub announced (it is not kept), or the cache holds a " +
    'symbolic link where a folder of its own belongs',
  ABORT_ERR: "an AbortSignal fired (the error's name is 'AbortError')"
} as const

export type Pg25ErrorCode = keyof typeof ERROR_CODES

/**
 * Every error this package raises is a `Pg25Error` with a stable `code`:
 *
 * ```ts
 * try { await Pipeline.fromPretrained('./missing') }
 * catch (e) { if (e instanceof Pg25Error && e.code === 'PG25_NOT_FOUND') console.error(e.message) }
 * ```
 */
export class Pg25Error extends Error {
  readonly code: Pg25ErrorCode
  constructor (code: Pg25ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'Pg25Error'
    this.code = code
  }
}

/** Rejection of a run stopped by an AbortSignal. `name` is 'AbortError', as in Node's own APIs. */
export class AbortError extends Pg25Error {
  constructor (message = 'The operation was aborted', options?: { cause?: unknown }) {
    super('ABORT_ERR', message, options)
    this.name = 'AbortError'
  }
}

/**
 * Rejection of a run stopped by `AbortSignal.timeout(ms)`: name 'TimeoutError', as Node's own APIs
 * reject on such a signal; still an AbortError (code ABORT_ERR), so code catching aborts keeps working.
 */
export class TimeoutError extends AbortError {
  constructor (message = 'The operation was aborted due to timeout', options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TimeoutError'
  }
}

/** The rejection for an aborted `signal`: a TimeoutError when its reason is a timeout, else an AbortError. */
export function abortError (signal: AbortSignal | undefined): AbortError {
  const reason: unknown = signal?.reason
  const timedOut = reason instanceof Error && reason.name === 'TimeoutError'
  return timedOut ? new TimeoutError(undefined, { cause: reason }) : new AbortError(undefined, { cause: reason })
}

/** `err` as the caller of an aborted `signal` should see it: an AbortError from a timeout becomes a TimeoutError. */
export function asSignalled (err: unknown, signal: AbortSignal | undefined): unknown {
  if (err instanceof AbortError && !(err instanceof TimeoutError) && signal?.aborted === true) return abortError(signal)
  return err
}

/** Turns an error thrown by the native addon (a plain Error with a `code`) into a Pg25Error. */
export function fromNative (err: unknown): Error {
  if (err instanceof Pg25Error) return err
  if (err instanceof Error) {
    const code = (err as Error & { code?: string }).code
    if (code === 'ABORT_ERR') return new AbortError(err.message)
    if (typeof code === 'string' && Object.hasOwn(ERROR_CODES, code)) return new Pg25Error(code as Pg25ErrorCode, err.message)
    return new Pg25Error('PG25_INTERNAL', err.message, { cause: err })
  }
  return new Pg25Error('PG25_INTERNAL', String(err))
}

/** Awaits a native promise, rethrowing its failure as a Pg25Error. */
export async function native<T> (fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw fromNative(err)
  }
}

export function throwIfAborted (signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal)
}
