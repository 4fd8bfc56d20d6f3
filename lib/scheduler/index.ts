import { Pg25Error } from '../errors'
import type { RawConfig } from './edm-config'
import { EDMDPMSolverMultistepScheduler } from './edm-dpm'
import { EDMEulerScheduler } from './edm-euler'
import type { Scheduler } from './scheduler'

export type SchedulerName = 'dpmpp-2m' | 'euler'

const CLASSES: Record<string, SchedulerName> = {
  EDMDPMSolverMultistepScheduler: 'dpmpp-2m',
  EDMEulerScheduler: 'euler'
}

/**
 * A scheduler from a model's `scheduler_config.json`; `override` swaps the sampler while keeping the
 * model's sigma settings (as diffusers' `Scheduler.from_config(pipe.scheduler.config)` does).
 *
 * ```ts
 * const s = createScheduler(config, 'model/scheduler/scheduler_config.json', 'euler')
 * ```
 */
export function createScheduler (config: RawConfig, source: string, override?: SchedulerName): Scheduler {
  const cls = config._class_name
  if (typeof cls !== 'string') throw new Pg25Error('PG25_BAD_CONFIG', `${source}: "_class_name" is missing`)
  const own = CLASSES[cls]
  if (own === undefined) {
    throw new Pg25Error('PG25_UNSUPPORTED', `${source}: scheduler "${cls}" is not supported (EDMDPMSolverMultistepScheduler, EDMEulerScheduler)`)
  }
  const name = override ?? own
  if (name === 'dpmpp-2m') {
    // Solver settings belong to the DPM class; when switching from Euler use the Playground defaults.
    return new EDMDPMSolverMultistepScheduler(own === 'dpmpp-2m' ? config : pickSigmaSettings(config), source)
  }
  if (name === 'euler') return new EDMEulerScheduler(pickSigmaSettings(config), source)
  throw new Pg25Error('PG25_INVALID_ARGUMENT', `scheduler must be 'dpmpp-2m' or 'euler', got ${JSON.stringify(override)}`)
}

function pickSigmaSettings (config: RawConfig): RawConfig {
  const keys = ['sigma_min', 'sigma_max', 'sigma_data', 'rho', 'sigma_schedule', 'prediction_type']
  return Object.fromEntries(keys.filter(k => k in config).map(k => [k, config[k]]))
}

export { EDMDPMSolverMultistepScheduler, EDMEulerScheduler }
export type { Scheduler }
export { hostOps, type TensorOps } from './tensor-ops'
