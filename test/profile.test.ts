// PG25_PROFILE=1: an engine that times every op on its device (the CUDA emulation's events here, the host
// clock on the CPU), read through engine.profile(); without it the profile stays empty.
import test from 'ava'
import { Runtime } from '../lib'
import './emulation'

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

test.serial('without PG25_PROFILE the profile is empty', async t => {
  const rt = Runtime.open('cpu', () => {})
  const x = rt.fromHost(new Float32Array(4), [4])
  ;(await rt.engine.op('silu', [x], {})).dispose()
  t.deepEqual(rt.engine.profile(), {})
  x.dispose()
  rt.dispose()
})
