import type { TensorOps } from './tensor-ops'

/**
 * A diffusion sampler driven step by step. Scalars are computed here; tensors are combined through
 * `TensorOps`, so latents stay on the backend (CPU or GPU) for the whole run.
 *
 * ```ts
 * const s = createScheduler(config, 'scheduler_config.json')
 * s.setTimesteps(30)
 * let x = ops.lincomb([[s.initNoiseSigma, noise]])
 * for (let i = 0; i < s.timesteps.length; i++) {
 *   const eps = await unet(s.scaleModelInput(ops, x, i), s.timesteps[i])
 *   x = s.step(ops, eps, i, x)
 * }
 * ```
 */
export interface Scheduler {
  readonly name: 'dpmpp-2m' | 'euler'
  /** Sigmas of the current schedule, float32 values, with the final sigma appended. */
  readonly sigmas: number[]
  /** The UNet timestep input for each step. */
  readonly timesteps: number[]
  /** sqrt(sigma_max^2 + 1): the initial noise scale. */
  readonly initNoiseSigma: number
  setTimesteps(steps: number): void
  scaleModelInput<T>(ops: TensorOps<T>, sample: T, stepIndex: number): T
  /** The next sample; the scheduler keeps what it needs from `modelOutput` (never the caller's tensors). */
  step<T>(ops: TensorOps<T>, modelOutput: T, stepIndex: number, sample: T): T
  /** The model's estimate of the clean sample at step `stepIndex` (for previews). */
  denoised<T>(ops: TensorOps<T>, modelOutput: T, stepIndex: number, sample: T): T
  /** Frees tensors the scheduler holds between steps. */
  reset<T>(ops: TensorOps<T>): void
}
