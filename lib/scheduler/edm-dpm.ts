import { Pg25Error } from '../errors'
import { ConfigReader, EDMBase, type RawConfig } from './edm-config'
import type { Scheduler } from './scheduler'
import type { TensorOps } from './tensor-ops'

/**
 * diffusers' EDMDPMSolverMultistepScheduler: DPM-Solver++ (1st or 2nd order, midpoint or heun),
 * Karras or exponential sigmas, `final_sigmas_type` zero or sigma_min, `lower_order_final`. The
 * Playground v2.5 default sampler.
 *
 * ```ts
 * const s = new EDMDPMSolverMultistepScheduler(JSON.parse(fs.readFileSync('scheduler/scheduler_config.json', 'utf8')))
 * s.setTimesteps(50)
 * ```
 */
export class EDMDPMSolverMultistepScheduler extends EDMBase implements Scheduler {
  readonly name = 'dpmpp-2m' as const
  readonly solverOrder: 1 | 2
  readonly solverType: 'midpoint' | 'heun'
  readonly lowerOrderFinal: boolean
  readonly eulerAtFinal: boolean
  readonly finalSigmasType: 'zero' | 'sigma_min'
  private modelOutputs: unknown[] = []
  private lowerOrderNums = 0

  constructor (raw: RawConfig, source = 'scheduler_config.json') {
    const r = new ConfigReader(raw, source)
    super(r)
    const order = r.number('solver_order', 2, v => Number.isInteger(v))
    if (order !== 1 && order !== 2) throw new Pg25Error('PG25_UNSUPPORTED', `${source}: "solver_order" is ${order}; supported: 1, 2`)
    this.solverOrder = order
    r.oneOf('algorithm_type', 'dpmsolver++', ['dpmsolver++'] as const)
    this.solverType = r.oneOf('solver_type', 'midpoint', ['midpoint', 'heun'] as const)
    this.lowerOrderFinal = r.bool('lower_order_final', true)
    this.eulerAtFinal = r.bool('euler_at_final', false)
    this.finalSigmasType = r.oneOf('final_sigmas_type', 'zero', ['zero', 'sigma_min'] as const)
    r.refuseTrue('thresholding')
  }

  setTimesteps (steps: number): void {
    this.schedule(steps, this.finalSigmasType === 'zero' ? 0 : Math.fround(this.config.sigmaMin))
    this.modelOutputs = []
    this.lowerOrderNums = 0
  }

  step<T> (ops: TensorOps<T>, modelOutput: T, i: number, sample: T): T {
    this.checkStep(i)
    const n = this.timesteps.length
    const lowerOrderFinal = i === n - 1 && (this.eulerAtFinal || (this.lowerOrderFinal && n < 15) || this.finalSigmasType === 'zero')
    const sigmaS0 = this.sigmas[i]
    const x0 = this.denoised(ops, modelOutput, i, sample)
    const outputs = this.modelOutputs as T[]
    outputs.push(x0)
    while (outputs.length > this.solverOrder) ops.release(outputs.shift() as T)

    const sigmaT = this.sigmas[i + 1]
    // alpha_t = 1 in EDM; lambda = -ln(sigma). A zero final sigma gives h = inf and exp(-h) = 0.
    const lambdaT = -Math.log(sigmaT)
    const lambdaS0 = -Math.log(sigmaS0)
    const h = lambdaT - lambdaS0
    const emh1 = Math.exp(-h) - 1
    let next: T
    if (this.solverOrder === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) {
      next = ops.lincomb([[sigmaT / sigmaS0, sample], [-emh1, x0]])
    } else {
      // Second order. (diffusers' lower_order_second only matters for a third-order solver.)
      const m0 = outputs[outputs.length - 1]
      const m1 = outputs[outputs.length - 2]
      const lambdaS1 = -Math.log(this.sigmas[i - 1])
      const r0 = (lambdaS0 - lambdaS1) / h
      // D1 = (m0 - m1) / r0
      const d1 = this.solverType === 'midpoint' ? -0.5 * emh1 / r0 : (emh1 / h + 1) / r0
      next = ops.lincomb([[sigmaT / sigmaS0, sample], [-emh1 + d1, m0], [-d1, m1]])
    }
    if (this.lowerOrderNums < this.solverOrder) this.lowerOrderNums++
    return next
  }

  reset<T> (ops: TensorOps<T>): void {
    for (const t of this.modelOutputs as T[]) ops.release(t)
    this.modelOutputs = []
    this.lowerOrderNums = 0
  }
}
