import test from 'ava'
import { TorchGenerator } from '../../lib'
import { readGolden, maxAbsDiff } from '../support/helpers'

test('randn matches torch.randn with a seeded CPU generator, every golden tensor within 1e-6', t => {
  const golden = readGolden('torch_randn.safetensors')
  const keys = Object.keys(golden)
  t.true(keys.length >= 9)
  for (const k of keys) {
    const [s, dims] = k.split('.')
    const shape = dims.split('x').map(Number)
    t.deepEqual(shape, golden[k].shape)
    const ours = new TorchGenerator(Number(s.slice(4))).randn(shape)
    t.true(maxAbsDiff(ours, golden[k].data) <= 1e-6, `${k}: ${maxAbsDiff(ours, golden[k].data)}`)
  }
})

test('tensors under 16 elements take torch\'s scalar path (torch.manual_seed(0); torch.randn(2, 3))', t => {
  // Published output of torch 1.x/2.x for this call.
  const expected = [1.5410, -0.2934, -2.1788, 0.5684, -1.0845, -1.3986]
  const ours = new TorchGenerator(0).randn([2, 3])
  t.true(maxAbsDiff(ours, expected) < 5e-5, Array.from(ours).join(', '))
})

test('one generator continues its stream across calls, as torch does', t => {
  const g = new TorchGenerator(42)
  const a = g.randn([1, 4, 8, 8])
  const b = g.randn([1, 4, 8, 8])
  const both = new TorchGenerator(42).randn([2, 4, 8, 8])
  t.notDeepEqual(Array.from(a), Array.from(b))
  t.is(both.length, 512)
})
