// The settings both EDM schedulers share, read from scheduler_config.json with every unsupported
// value refused by name, and the sigma schedules diffusers computes from them.
import { Pg25Error } from '../errors'
import type { TensorOps } from './tensor-ops'

export type SigmaSchedule = 'karras' | 'exponential'
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample'

export interface EDMConfig {
  sigmaMin: number
  sigmaMax: number
  sigmaData: number
  rho: number
  sigmaSchedule: SigmaSchedule
  predictionType: PredictionType
}

export type RawConfig = Record<string, unknown>

export class ConfigReader {
  constructor (readonly raw: RawConfig, readonly source: string) {}

  number (key: string, fallback: number, check: (v: number) => boolean = () => true): number {
    const v = this.raw[key]
    if (v === undefined || v === null) return fallback
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw new Pg25Error('PG25_BAD_CONFIG', `${this.source}: "${key}" has an invalid value ${JSON.stringify(v)}`)
    return v
  }

  bool (key: string, fallback: boolean): boolean {
    const v = this.raw[key]
    if (v === undefined || v === null) return fallback
    if (typeof v !== 'boolean') throw new Pg25Error('PG25_BAD_CONFIG', `${this.source}: "${key}" must be true or false`)
    return v
  }

  oneOf<T extends string> (key: string, fallback: T, allowed: readonly T[]): T {
    const v = this.raw[key]
    if (v === undefined || v === null) return fallback
    if (typeof v !== 'string') throw new Pg25Error('PG25_BAD_CONFIG', `${this.source}: "${key}" must be a string`)
    if (!(allowed as readonly string[]).includes(v)) {
      throw new Pg25Error('PG25_UNSUPPORTED', `${this.source}: "${key}" is "${v}"; supported: ${allowed.join(', ')}`)
    }
    return v as T
  }

  refuseTrue (key: string): void {
    if (this.bool(key, false)) throw new Pg25Error('PG25_UNSUPPORTED', `${this.source}: "${key}" is true; this scheduler supports only false`)
  }
}

export function readEDMConfig (r: ConfigReader): EDMConfig {
  const sigmaMin = r.number('sigma_min', 0.002, v => v > 0)
  const sigmaMax = r.number('sigma_max', 80, v => v > 0)
  if (!(sigmaMax > sigmaMin)) throw new Pg25Error('PG25_BAD_CONFIG', `${r.source}: "sigma_max" must exceed "sigma_min"`)
  return {
    sigmaMin,
    sigmaMax,
    sigmaData: r.number('sigma_data', 0.5, v => v > 0),
    rho: r.number('rho', 7, v => v > 0),
    sigmaSchedule: r.oneOf('sigma_schedule', 'karras', ['karras', 'exponential'] as const),
    predictionType: r.oneOf('prediction_type', 'epsilon', ['epsilon', 'v_prediction', 'sample'] as const)
  }
}

/** np.linspace(0, 1, n) in float64. */
function ramp (n: number): number[] {
  if (n === 1) return [0]
  const step = 1 / (n - 1)
  return Array.from({ length: n }, (_, i) => (i === n - 1 ? 1 : i * step))
}

/** The n float32 sigmas of the schedule, largest first (before the final sigma is appended). */
export function computeSigmas (cfg: EDMConfig, n: number): number[] {
  if (cfg.sigmaSchedule === 'karras') {
    const minInv = cfg.sigmaMin ** (1 / cfg.rho)
    const maxInv = cfg.sigmaMax ** (1 / cfg.rho)
    return ramp(n).map(r => Math.fround((maxInv + r * (minInv - maxInv)) ** cfg.rho))
  }
  // torch.linspace(log(min), log(max), n) in float32, exp, flipped.
  const f = Math.fround
  const start = f(Math.log(cfg.sigmaMin))
  const end = f(Math.log(cfg.sigmaMax))
  const step = n > 1 ? f(f(end - start) / (n - 1)) : 0
  const half = Math.floor(n / 2)
  const lin = Array.from({ length: n }, (_, i) => (i < half ? f(start + f(step * i)) : f(end - f(step * (n - i - 1)))))
  return lin.map(v => f(Math.exp(v))).reverse()
}

/** EDM noise conditioning fed to the UNet as its timestep: 0.25 ln(sigma), in float32. */
export function preconditionNoise (sigma: number): number {
  return Math.fround(Math.fround(Math.log(sigma)) * 0.25)
}

/** c_skip and c_out with which the denoised sample is c_skip * x + c_out * model_output. */
export function preconditionOutputs (cfg: EDMConfig, sigma: number): { cSkip: number, cOut: number } {
  const sd2 = cfg.sigmaData ** 2
  const cSkip = sd2 / (sigma ** 2 + sd2)
  const cOut = (sigma * cfg.sigmaData) / Math.sqrt(sigma ** 2 + sd2)
  if (cfg.predictionType === 'epsilon') return { cSkip, cOut }
  if (cfg.predictionType === 'v_prediction') return { cSkip, cOut: -cOut }
  return { cSkip: 0, cOut: 1 }
}

/**
 * What both EDM schedulers share: the sigma settings, the initial noise scale, the input scaling
 * c_in = 1 / sqrt(sigma^2 + sigma_data^2) and the denoised estimate c_skip x + c_out model_output.
 */
export abstract class EDMBase {
  readonly config: EDMConfig
  sigmas: number[] = []
  timesteps: number[] = []

  protected constructor (r: ConfigReader) {
    this.config = readEDMConfig(r)
  }

  get initNoiseSigma (): number {
    return Math.sqrt(this.config.sigmaMax ** 2 + 1)
  }

  /** Sets `timesteps` and `sigmas` for `steps` steps, with `final` appended. */
  protected schedule (steps: number, final: number): void {
    if (!Number.isInteger(steps) || steps < 1) throw new Pg25Error('PG25_INVALID_ARGUMENT', `steps must be a positive integer, got ${steps}`)
    const s = computeSigmas(this.config, steps)
    this.timesteps = s.map(preconditionNoise)
    this.sigmas = [...s, final]
  }

  protected checkStep (i: number): void {
    if (i < 0 || i >= this.timesteps.length) throw new Pg25Error('PG25_INVALID_ARGUMENT', `step index ${i} is outside the ${this.timesteps.length}-step schedule`)
  }

  denoised<T> (ops: TensorOps<T>, modelOutput: T, i: number, sample: T): T {
    const { cSkip, cOut } = preconditionOutputs(this.config, this.sigmas[i])
    return ops.lincomb([[cSkip, sample], [cOut, modelOutput]])
  }

  scaleModelInput<T> (ops: TensorOps<T>, sample: T, stepIndex: number): T {
    const sigma = this.sigmas[stepIndex]
    return ops.lincomb([[1 / Math.sqrt(sigma ** 2 + this.config.sigmaData ** 2), sample]])
  }
}
