// PG25_PROFILE=1: an engine that times every op on its device (the CUDA emulation's events here, the host
// clock on the CPU), read through engine.profile(); without it the profile stays empty.
import test from 'ava'
import { Runtime, UNetModel, readModelIndex, resolveComponent } from '../../lib'
import { TINY, goldenUnet } from '../support/helpers'
import '../support/emulation'

for (const device of ['cpu', 'cuda'] as const) {
  test.serial(`${device}: profile() counts each op's calls and time since the last read`, async t => {
    process.env.PG25_PROFILE = '1'
    const rt = Runtime.open(device, () => {})
    delete process.env.PG25_PROFILE
    const x = rt.fromHost(Float32Array.from({ length: 2 * 8 * 4 * 4 }, (_, i) => Math.sin(i)), [2, 8, 4, 4])
    const g = rt.fromHost(new Float32Array(8).fill(1), [8])
    const b = rt.fromHost(new Float32Array(8), [8])
    t.deepEqual(rt.engine.profile(), {})
    for (let i = 0; i < 3; i++) (await rt.engine.op('add', [x, x], {})).dispose()
    ;(await rt.engine.op('group_norm', [x, g, b], { groups: 4, eps: 1e-5, silu: 1 })).dispose()
    const p = rt.engine.profile()
    t.deepEqual(Object.keys(p).sort(), ['add', 'group_norm'])
    t.is(p.add.calls, 3)
    t.is(p.group_norm.calls, 1)
    for (const o of Object.values(p)) t.true(Number.isFinite(o.ms) && o.ms >= 0, JSON.stringify(o))
    t.deepEqual(rt.engine.profile(), {}, 'a read starts afresh')
    for (const y of [x, g, b]) y.dispose()
    rt.dispose()
  })
}

for (const device of ['cpu', 'cuda'] as const) {
  test.serial(`${device}: an op another op calls is part of the outer op; a UNet call stays profiled on its second run (no recording)`, async t => {
    process.env.PG25_PROFILE = '1'
    const rt = Runtime.open(device, () => {})
    delete process.env.PG25_PROFILE
    // On the CPU, linears is the interface's default: one linear per weight, inside it.
    const x = rt.fromHost(Float32Array.from({ length: 6 * 8 }, (_, i) => Math.cos(i)), [6, 8])
    const ws = [0, 1, 2].map(k => rt.fromHost(Float32Array.from({ length: 4 * 8 }, (_, i) => Math.sin(i + k)), [4, 8]))
    const y = await rt.engine.op('linears', [x, ...ws], {}) // linears, then the products joined by two concats
    const p = rt.engine.profile()
    t.deepEqual(Object.keys(p).sort(), ['concat', 'linears'], JSON.stringify(p))
    t.is(p.linears.calls, 1)
    t.is(p.concat.calls, 2)
    const unet = await UNetModel.load(rt, await resolveComponent(TINY, await readModelIndex(TINY), 'unet', null, () => {}))
    for (let i = 0; i < 2; i++) {
      rt.engine.profile()
      t.true((await goldenUnet(rt, unet)).err < 2e-2)
      const q = rt.engine.profile()
      // Every op of the call is seen, kernel by kernel, the second time too: profiling turns recording off.
      for (const op of ['conv2d', 'group_norm', 'attention', 'layer_norm']) t.true((q[op]?.calls ?? 0) > 0, `call ${i}: ${op}: ${JSON.stringify(q)}`)
    }
    for (const v of [x, ...ws, y]) v.dispose()
    rt.dispose()
  })
}

test.serial('without PG25_PROFILE the profile is empty', async t => {
  const rt = Runtime.open('cpu', () => {})
  const x = rt.fromHost(new Float32Array(4), [4])
  ;(await rt.engine.op('silu', [x], {})).dispose()
  t.deepEqual(rt.engine.profile(), {})
  x.dispose()
  rt.dispose()
})
