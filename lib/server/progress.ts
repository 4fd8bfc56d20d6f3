// What the server's runs are doing, for A1111's GET /sdapi/v1/progress: the step of the run that
// started first among those running, its estimated time left, and its latest preview.
import type { RGBImage } from '../image'
import type { StepInfo } from '../options'

/** One request's runs: `calls` generate() calls (A1111's n_iter), of which `done` have finished. */
export interface Tracked {
  readonly started: number
  calls: number
  done: number
  step: number
  steps: number
  preview?: RGBImage
}

export interface ProgressReport {
  /** 0 to 1 over the request's calls */
  progress: number
  /** seconds left at the pace so far (0 before the first step) */
  eta: number
  step: number
  steps: number
  calls: number
  done: number
  preview?: RGBImage
}

export class ProgressBoard {
  private readonly runs = new Set<Tracked>()

  constructor (private readonly now: () => number = Date.now) {}

  /** Starts tracking a request that will make `calls` generate() calls. */
  start (calls = 1): Tracked {
    const t: Tracked = { started: this.now(), calls, done: 0, step: 0, steps: 0 }
    this.runs.add(t)
    return t
  }

  step (t: Tracked, s: StepInfo): void {
    t.step = s.step
    t.steps = s.steps
    if (s.previews?.[0] !== undefined) t.preview = s.previews[0]
  }

  /** One of the request's calls finished. */
  callDone (t: Tracked): void {
    t.done = Math.min(t.calls, t.done + 1)
    t.step = 0
  }

  end (t: Tracked): void {
    this.runs.delete(t)
  }

  /** The oldest running request's progress, or null when nothing runs. */
  current (): ProgressReport | null {
    const t = this.runs.values().next().value as Tracked | undefined
    if (t === undefined) return null
    const frac = t.steps > 0 ? t.step / t.steps : 0
    const progress = Math.min(1, (t.done + frac) / t.calls)
    const elapsed = (this.now() - t.started) / 1000
    const eta = progress > 0 ? elapsed / progress - elapsed : 0
    return { progress, eta, step: t.step, steps: t.steps, calls: t.calls, done: t.done, preview: t.preview }
  }

  /** Requests being tracked (running, or waiting for their turn). */
  get size (): number {
    return this.runs.size
  }
}
