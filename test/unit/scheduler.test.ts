import test from 'ava'
import path from 'node:path'
import { readFileSync } from 'node:fs'
import { createScheduler, EDMDPMSolverMultistepScheduler, EDMEulerScheduler, hostOps, Pg25Error, Runtime, type Scheduler, type TensorOps } from '../../lib'
import { preconditionOutputs } from '../../lib/scheduler/edm-config'
import { TINY, goldenCases, readGolden, relativeError } from '../support/helpers'

const golden = readGolden('schedulers.safetensors')
const dpmConfig = goldenCases().schedulers.dpm_config
const eulerConfig = { sigma_min: 0.002, sigma_max: 80, sigma_data: 0.5, prediction_type: 'epsilon', rho: 7 }
const make = (kind: string): Scheduler => kind === 'dpm' ? new EDMDPMSolverMultistepScheduler(dpmConfig) : new EDMEulerScheduler(eulerConfig)

for (const kind of ['dpm', 'euler']) {
  test(`${kind}: sigmas and timesteps match for every step count (relative 1e-6)`, t => {
    const counts = Object.keys(golden).filter(k => k.startsWith(`${kind}.n`) && k.endsWith('.sigmas')).map(k => Number(k.split('.')[1].slice(1)))
    t.true(counts.length >= 7)
    for (const n of counts) {
      const s = make(kind)
      s.setTimesteps(n)
      t.true(relativeError(s.sigmas, golden[`${kind}.n${n}.sigmas`].data) <= 1e-6, `n=${n} sigmas`)
      t.true(relativeError(s.timesteps, golden[`${kind}.n${n}.timesteps`].data) <= 1e-6, `n=${n} timesteps`)
    }
  })

  // eps_i = tanh(0.3 * model_input_i) + 0.1 * cos(model_input_i * |ln sigma_i|): the golden stand-in for the UNet.
  const runTrajectory = <T>(t: any, ops: TensorOps<T>, up: (a: Float32Array) => T, down: (x: T) => Float32Array): void => {
    const s = make(kind)
    s.setTimesteps(12)
    let x = up(golden[`${kind}.traj.x0`].data)
    for (let i = 0; i < 12; i++) {
      const mi = s.scaleModelInput(ops, x, i)
      const host = down(mi)
      t.true(relativeError(host, golden[`${kind}.traj.model_input${i}`].data) <= 1e-5, `model_input${i}`)
      const ls = Math.abs(Math.log(s.sigmas[i]))
      const eps = up(host.map(v => Math.tanh(0.3 * v) + 0.1 * Math.cos(v * ls)))
      const next = s.step(ops, eps, i, x)
      ops.release(mi); ops.release(eps); ops.release(x)
      x = next
      const err = relativeError(down(x), golden[`${kind}.traj.x${i + 1}`].data)
      t.true(err <= 1e-5, `x${i + 1}: ${err}`)
    }
    s.reset(ops)
  }

  test(`${kind}: the 12-step trajectory matches at every step on host arrays (relative 1e-5)`, t => {
    runTrajectory(t, hostOps, a => a, x => x)
  })

  test(`${kind}: the same trajectory on backend tensors that stay in the backend`, t => {
    const rt = Runtime.open('cpu', () => {})
    const shape = golden[`${kind}.traj.x0`].shape
    runTrajectory(t, rt.ops, a => rt.fromHost(Float32Array.from(a), shape), x => rt.toHost(x))
    rt.dispose()
  })
}

test('the model\'s own scheduler config builds the Playground default; the other sampler is selectable', t => {
  const file = path.join(TINY, 'scheduler', 'scheduler_config.json')
  const cfg = JSON.parse(readFileSync(file, 'utf8'))
  t.is(createScheduler(cfg, file).name, 'dpmpp-2m')
  t.is(createScheduler(cfg, file, 'euler').name, 'euler')
  t.is(createScheduler({ ...cfg, _class_name: 'EDMEulerScheduler' }, file, 'dpmpp-2m').name, 'dpmpp-2m')
  const s = createScheduler(cfg, file)
  t.is(s.initNoiseSigma, Math.sqrt(80 * 80 + 1))
})

test('config options: exponential sigmas, first order, heun, sigma_min final, v_prediction and sample', t => {
  const exp = new EDMDPMSolverMultistepScheduler({ ...dpmConfig, sigma_schedule: 'exponential' })
  exp.setTimesteps(5)
  const expected = Array.from({ length: 5 }, (_, i) => Math.exp(Math.log(0.002) + (i * (Math.log(80) - Math.log(0.002))) / 4)).reverse()
  t.true(relativeError(exp.sigmas.slice(0, 5), expected) < 1e-6)
  const sm = new EDMDPMSolverMultistepScheduler({ ...dpmConfig, final_sigmas_type: 'sigma_min' })
  sm.setTimesteps(4)
  t.is(sm.sigmas[4], Math.fround(0.002))
  // With a model that predicts the clean sample exactly, every variant lands on that sample.
  const target = Float32Array.from([0.5, -1, 2, 0.25])
  for (const extra of [{ solver_order: 1 }, { solver_type: 'heun' }, { prediction_type: 'sample' }, {}]) {
    const s = new EDMDPMSolverMultistepScheduler({ ...dpmConfig, ...extra, prediction_type: 'sample' })
    s.setTimesteps(6)
    let x: Float32Array = Float32Array.from([3, 3, 3, 3])
    for (let i = 0; i < 6; i++) x = s.step(hostOps, target, i, x)
    t.true(relativeError(x, target) < 1e-6, JSON.stringify(extra))
  }
  // v-prediction: denoised = c_skip x - |c_out| v, so v = (c_skip x - x0) / |c_out| is an exact model.
  const v = new EDMEulerScheduler({ ...eulerConfig, prediction_type: 'v_prediction' })
  v.setTimesteps(8)
  let y: Float32Array = Float32Array.from([3, -3, 1, 0])
  for (let i = 0; i < 8; i++) {
    const { cSkip, cOut } = preconditionOutputs(v.config, v.sigmas[i])
    t.true(cOut < 0)
    const model = y.map((xv, k) => (cSkip * xv - target[k]) / -cOut)
    y = v.step(hostOps, model, i, y)
  }
  t.true(relativeError(y, target) < 1e-5)
})

test('unsupported scheduler values are refused by name', t => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ solver_order: 3 }, /"solver_order" is 3/],
    [{ algorithm_type: 'sde-dpmsolver++' }, /"algorithm_type" is "sde-dpmsolver\+\+"/],
    [{ solver_type: 'bh2' }, /"solver_type" is "bh2"/],
    [{ final_sigmas_type: 'one' }, /"final_sigmas_type"/],
    [{ sigma_schedule: 'linear' }, /"sigma_schedule" is "linear"/],
    [{ prediction_type: 'flow' }, /"prediction_type" is "flow"/],
    [{ thresholding: true }, /"thresholding" is true/],
    [{ sigma_max: -1 }, /"sigma_max"/]
  ]
  for (const [patch, re] of bad) {
    const e = t.throws(() => new EDMDPMSolverMultistepScheduler({ ...dpmConfig, ...patch }, 'x/scheduler_config.json'))
    t.true(e instanceof Pg25Error)
    t.regex(e.message, re)
    t.regex(e.message, /x\/scheduler_config\.json/)
  }
  const e = t.throws(() => createScheduler({ _class_name: 'DDIMScheduler' }, 'cfg.json'))
  t.is((e as Pg25Error).code, 'PG25_UNSUPPORTED')
  t.regex(e.message, /"DDIMScheduler"/)
})
