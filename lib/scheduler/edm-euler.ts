import { ConfigReader, EDMBase, preconditionOutputs, type RawConfig } from './edm-config'
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
export class EDMEulerScheduler extends EDMBase implements Scheduler {
  readonly name = 'euler' as const

  constructor (raw: RawConfig, source = 'scheduler_config.json') {
    super(new ConfigReader(raw, source))
  }

  setTimesteps (steps: number): void {
    this.schedule(steps, 0)
  }

  step<T> (ops: TensorOps<T>, modelOutput: T, i: number, sample: T): T {
    this.checkStep(i)
    const sigma = this.sigmas[i]
    const { cSkip, cOut } = preconditionOutputs(this.config, sigma)
    // x + (x - denoised) / sigma * dt, with denoised = cSkip x + cOut eps
    const dt = this.sigmas[i + 1] - sigma
    return ops.lincomb([[1 + ((1 - cSkip) * dt) / sigma, sample], [(-cOut * dt) / sigma, modelOutput]])
  }

  reset (): void {}
}
