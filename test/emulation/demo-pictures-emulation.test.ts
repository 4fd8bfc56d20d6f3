// The demo model's pictures on the CUDA backend (in the CPU emulation of CUDA): the same reading by
// pixel statistics as test/pipeline/demo-pictures.test.ts, at guidance 3, one seed per prompt.
import test from 'ava'
import { Pipeline } from '../../lib'
import { ensureDemoModel } from '../../lib/demo/demo-model'
import { emulationReport } from '../support/emulation'
import { HELD_BACK_PROMPTS, SEEN_PROMPTS, score } from '../support/shape-world'

test('in emulated CUDA at least 90% of the demo pictures show what was asked', async t => {
  const pipe = await Pipeline.fromPretrained(await ensureDemoModel(), { device: 'cuda', onWarning: () => {} })
  const s = await score(pipe, [...SEEN_PROMPTS, ...HELD_BACK_PROMPTS], [1], 3)
  await pipe.dispose()
  t.log(`emulated CUDA, guidance 3: colours right ${s.colours}/${s.total}, colours, shape and position right ${s.right}/${s.total}`)
  for (const w of s.wrong) t.log(`not all right: ${w}`)
  t.deepEqual(emulationReport().misuse, [])
  t.true(s.right / s.total >= 0.9, `${s.right}/${s.total}`)
})
