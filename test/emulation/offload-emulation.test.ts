// Offload is host memory's: on the CUDA backend (run in its CPU emulation) a component's weights stay
// on the device, pageOut says so, and offload 'always' changes nothing.
import test from 'ava'
import { Pipeline, Runtime, UNetModel, readModelIndex, resolveComponent } from '../../lib'
import { TINY } from '../support/helpers'
import { emulationReport } from '../support/emulation'

test('cuda: pageOut keeps the weights on the device; offload always gives the same image as never', async t => {
  const rt = Runtime.open('cuda', () => {})
  t.teardown(() => rt.dispose())
  const unet = await UNetModel.load(rt, await resolveComponent(TINY, await readModelIndex(TINY), 'unet', null, () => {}))
  const held = rt.engine.bytesInUse()
  t.false(await unet.pageOut())
  t.false(unet.paged)
  t.is(rt.engine.bytesInUse(), held)
  const images: Buffer[] = []
  for (const offload of ['never', 'always'] as const) {
    const pipe = await Pipeline.fromPretrained(TINY, { device: 'cuda', offload })
    images.push(Buffer.from((await pipe.generate('a cat', { seed: 2, steps: 3, width: 64, height: 64 })).images[0].data))
    await pipe.dispose()
  }
  t.true(images[0].equals(images[1]))
  t.deepEqual(emulationReport().misuse, [])
})
