import { Pg25Error } from '../errors'
import { ConfigReader, computeSigmas, preconditionNoise, preconditionOutputs, readEDMConfig, type EDMConfig, type RawConfig } from './edm-config'
import type { Scheduler } from './scheduler'
import type { TensorOps } from './tensor-ops'

/**
 * diffusers' EDMEulerScheduler (deterministic: s_churn 0): one model call per step.
 *
 * ```ts
 * const s = new EDMEulerScheduler({ sigma_min: 0.002, sigma_max: 80, sigma_data: 0.5, rho: 7 })
 * s.setTimesteps(30)
 * ```
 */
export class EDMEulerScheduler implements Scheduler {
  readonly name = 'euler' as const
  readonly config: EDMConfig
  sigmas: number[] = []
  timesteps: number[] = []

  constructor (raw: RawConfig, source = 'scheduler_config.json') {
    this.config = readEDMConfig(new ConfigReader(raw, source))
  }

  get initNoiseSigma (): number {
    return Math.sqrt(this.config.sigmaMax ** 2 + 1)
  }

  setTimesteps (steps: number): void {
    if (!Number.isInteger(steps) || steps < 1) throw new Pg25Error('PG25_INVALID_ARGUMENT', `steps must be a positive integer, got ${steps}`)
    const s = computeSigmas(this.config, steps)
    this.timesteps = s.map(preconditionNoise)
    this.sigmas = [...s, 0]
  }

  denoised<T> (ops: TensorOps<T>, modelOutput: T, i: number, sample: T): T {
    const { cSkip, cOut } = preconditionOutputs(this.config, this.sigmas[i])
    return ops.lincomb([[cSkip, sample], [cOut, modelOutput]])
  }

  scaleModelInput<T> (ops: TensorOps<T>, sample: T, stepIndex: number): T {
    const sigma = this.sigmas[stepIndex]
    return ops.lincomb([[1 / Math.sqrt(sigma ** 2 + this.config.sigmaData ** 2), sample]])
  }

  step<T> (ops: TensorOps<T>, modelOutput: T, i: number, sample: T): T {
    if (i < 0 || i >= this.timesteps.length) throw new Pg25Error('PG25_INVALID_ARGUMENT', `step index ${i} is outside the ${this.timesteps.length}-step schedule`)
    const sigma = this.sigmas[i]
    const { cSkip, cOut } = preconditionOutputs(this.config, sigma)
    // x + (x - denoised) / sigma * dt, with denoised = cSkip x + cOut eps
    const dt = this.sigmas[i + 1] - sigma
    return ops.lincomb([[1 + ((1 - cSkip) * dt) / sigma, sample], [(-cOut * dt) / sigma, modelOutput]])
  }

  reset (): void {}
}
