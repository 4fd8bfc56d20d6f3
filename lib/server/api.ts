// What the server hands each API's handlers (lib/server/index.ts builds it): the runner, the limits, and
// run(), the one way to generate: the queue bound, a place in the queue, cancellation when the client
// leaves or the server stops, and progress for /sdapi/v1/progress.
import type http from 'node:http'
import type { GenerateOptions, GenerateResult, Size } from '../options'
import type { ProgressBoard } from './progress'

export const DEFAULT_MAX_PIXELS = 4 * 1024 * 1024

/**
 * What the server runs requests on: a local Pipeline, or a GenerateQueue that hands them to a fleet
 * of workers (`pg25 serve --redis`).
 */
export interface Runner {
  generate(prompt: string, options: GenerateOptions): Promise<GenerateResult>
  /** GET /health's device */
  readonly device: string
  /** the output size of a request without width and height, for the pixel limit */
  readonly defaultSize: Size
  /** requests run at once; the rest wait in the server's queue (default 1, as a pipeline runs one at a time) */
  readonly parallel?: number
  /** the model's name, for /health and the APIs' model lists (a Pipeline's Hub id or folder name) */
  readonly model?: string
  /** more fields for GET /health */
  health?(): Promise<Record<string, unknown>>
}

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
