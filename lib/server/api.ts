// What the server hands each API's handlers (lib/server.ts builds it): the runner, the limits, and
// run(), the one way to generate: the queue bound, a place in the queue, cancellation when the client
// leaves or the server stops, and progress for /sdapi/v1/progress.
import type http from 'node:http'
import type { GenerateOptions, GenerateResult } from '../options'
import type { Runner } from '../server'
import type { ProgressBoard } from './progress'

/** One generate() call on the server's runner, with the request's signal and progress attached. */
export type RunCall = (prompt: string, options: GenerateOptions) => Promise<GenerateResult>

export interface ApiContext {
  readonly runner: Runner
  readonly maxBody: number
  readonly token: string | undefined
  readonly cors: ReadonlySet<string>
  readonly progress: ProgressBoard
  /** the model's name as the APIs report it */
  model(): string
  /** Refuses (413) a request for more output pixels than the server allows; null (malformed sizes) passes, for generate() to explain. */
  checkPixels(pixels: number | null): void
  /**
   * Takes a place in the queue (503 when full or stopping) and runs `work`, which makes `calls`
   * generate() calls through `run`. Resolves undefined when the request was cancelled (its client left).
   */
  run<T>(req: http.IncomingMessage, res: http.ServerResponse, calls: number, work: (run: RunCall) => Promise<T>): Promise<T | undefined>
}

export type Route = (req: http.IncomingMessage, res: http.ServerResponse, ctx: ApiContext) => Promise<void>
