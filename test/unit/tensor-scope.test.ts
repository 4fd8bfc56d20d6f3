import test from 'ava'
import type { NativeTensor } from '../../lib/native'
import { TensorScope } from '../../lib/tensor-scope'

function tensor (name: string, freed: string[]): NativeTensor {
  let disposed = false
  return {
    shape: [1],
    get disposed () { return disposed },
    dispose: () => {
      if (disposed) throw new Error(`${name} freed twice`)
      disposed = true
      freed.push(name)
    }
  }
}

test('a scope frees what it holds when its block ends, also by a throw, and never twice', t => {
  const freed: string[] = []
  const a = tensor('a', freed)
  const b = tensor('b', freed)
  const kept = tensor('kept', freed)
  t.throws(() => {
    using scope = new TensorScope()
    scope.hold(a)
    scope.hold(b)
    scope.take(scope.hold(kept))
    scope.free(b)
    t.deepEqual(freed, ['b'])
    throw new Error('boom')
  }, { message: 'boom' })
  t.deepEqual(freed, ['b', 'a'])
  t.false(kept.disposed)
})

test('replace frees the carried tensor and holds the next one', t => {
  const freed: string[] = []
  let x = tensor('x0', freed)
  {
    using scope = new TensorScope()
    scope.hold(x)
    for (let i = 1; i <= 3; i++) x = scope.replace(x, tensor(`x${i}`, freed))
    t.deepEqual(freed, ['x0', 'x1', 'x2'])
    t.is(scope.replace(x, x), x)
    t.deepEqual(freed, ['x0', 'x1', 'x2'])
  }
  t.deepEqual(freed, ['x0', 'x1', 'x2', 'x3'])
})
