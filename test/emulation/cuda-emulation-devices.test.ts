// device: 'cuda:N' on an emulated machine with two GPUs (PG25_EMU_DEVICES=2). The emulation keeps
// CUDA's current device per host thread and reports any kernel, library call or stream-ordered
// allocation issued to a stream of another device, so a backend that forgot to select its GPU on one
// of the threads its calls arrive on (the main thread, libuv's pool) fails here.
import test from 'ava'
import { Pipeline, Pg25Error, Runtime } from '../../lib'
import { TINY } from '../support/helpers'
import { emulationReport, psnr } from '../support/emulation'

process.env.PG25_EMU_DEVICES = '2'

const quick = { steps: 3, width: 64, height: 64, seed: 11 }

test.serial('a pipeline pinned to cuda:1 runs there, alongside one on cuda:0, with no call on the wrong device', async t => {
  emulationReport(true)
  const [a, b] = await Promise.all([
    Pipeline.fromPretrained(TINY, { device: 'cuda', onWarning: () => {} }),
    Pipeline.fromPretrained(TINY, { device: 'cuda:1', onWarning: () => {} })
  ])
  try {
    t.is(a.device, 'cuda')
    t.is(b.device, 'cuda:1')
    // Both at once: their jobs interleave on libuv's threads, each thread switching device per job.
    const [ra, rb] = await Promise.all([a.generate('a red cube', quick), b.generate('a red cube', quick)])
    t.is(psnr(ra.images[0].data, rb.images[0].data), Infinity, 'the same image from either GPU')
    const cpu = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
    const rc = await cpu.generate('a red cube', quick)
    await cpu.dispose()
    t.true(psnr(rb.images[0].data, rc.images[0].data) >= 35, 'cuda:1 agrees with the CPU backend')
    // Each engine counts its own GPU's memory.
    t.true(b.memory().device > 0)
    t.is(b.memory().host, 0)
  } finally {
    await a.dispose()
    await b.dispose()
  }
  const r = emulationReport(true)
  t.deepEqual(r.misuse, [])
  t.is(r.liveAllocations, 0)
})

test.serial('a GPU index that does not exist is refused by name', t => {
  const e = t.throws(() => Runtime.open('cuda:2', () => {}), { instanceOf: Pg25Error })
  t.is(e?.code, 'PG25_NO_DEVICE')
  t.regex(e?.message ?? '', /"cuda:2" does not exist: this machine has 2 GPUs \(cuda:0 to cuda:1\)/)
})

test.serial('a malformed device string is refused before any GPU is touched', t => {
  for (const device of ['cuda:', 'cuda:01', 'cuda:-1', 'cuda:1.5', 'gpu:0', 'cuda:9999']) {
    const e = t.throws(() => Runtime.open(device as any, () => {}), { instanceOf: Pg25Error }, device)
    t.is(e?.code, 'PG25_INVALID_ARGUMENT', device)
    t.true(e?.message.includes(JSON.stringify(device)), device)
  }
})

test.serial("'auto' takes GPU 0", t => {
  const rt = Runtime.open('auto', () => {})
  t.is(rt.device, 'cuda')
  rt.dispose()
})
