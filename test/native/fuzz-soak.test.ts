import test from 'ava'
import { fuzzHub } from '../../bench/fuzz-hub'
import { fuzzLoRA } from '../../bench/fuzz-lora'

// A fixed share of npm run fuzz's randomized LoRA files and Hub answers (bench/fuzz-*.ts), so that the
// suite runs them too: each must load or be refused with a Pg25Error, never hang, abort or grow.
test.serial('400 random LoRA files: each loads within its checks or is refused with a Pg25Error', async t => {
  const { runs, loaded } = await fuzzLoRA(runs => runs < 400)
  t.is(runs, 400)
  t.true(loaded > 0 && loaded < 400, `${loaded} loaded`)
})

test.serial('25 random Hub answers: each download ends with the right bytes or a Pg25Error', async t => {
  const { runs, peak } = await fuzzHub(runs => runs < 25)
  t.is(runs, 25)
  t.true(peak < 2 ** 30)
})
