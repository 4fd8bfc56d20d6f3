import test from 'ava'
import { fmtDuration, fmtSize, loadReporter, stepReporter } from '../../lib/cli/progress'

// The CLI's progress rendering on a fake clock: rate and time left from the step times, one line per
// tenth in a log, a throttled bar redrawn in place on a terminal.
function sink (isTTY: boolean): { out: { isTTY: boolean, write: (s: string) => boolean }, text: () => string } {
  let text = ''
  return { out: { isTTY, write: (s: string) => { text += s; return true } }, text: () => text }
}

test('steps in a log: one line per tenth, with it/s and ETA from the step times', t => {
  let now = 1000
  const s = sink(false)
  const r = stepReporter(s.out, () => now)
  now += 3000 // text encoding before the first step
  for (let step = 1; step <= 30; step++) {
    now += 500
    r.update({ step, steps: 30, sigma: 1 })
  }
  r.end()
  const lines = s.text().trimEnd().split('\n')
  t.is(lines.length, 10)
  t.is(lines[0], 'steps: 3/30 (10%), 2.00 it/s, ETA 0:14')
  t.is(lines[4], 'steps: 15/30 (50%), 2.00 it/s, ETA 0:08')
  t.is(lines[9], 'steps: 30/30 (100%), 2.00 it/s, ETA 0:00')
})

test('fewer than ten steps: a line per step; slow steps are shown as s/it', t => {
  let now = 0
  const s = sink(false)
  const r = stepReporter(s.out, () => now)
  for (let step = 1; step <= 3; step++) {
    now += 4000
    r.update({ step, steps: 3, sigma: 1 })
  }
  t.deepEqual(s.text().trimEnd().split('\n'), ['steps: 1/3 (33%), 4.00 s/it, ETA 0:08', 'steps: 2/3 (66%), 4.00 s/it, ETA 0:04', 'steps: 3/3 (100%), 4.00 s/it, ETA 0:00'])
})

test('steps on a terminal: a bar redrawn in place, at most ten times a second, always at the end', t => {
  let now = 0
  const s = sink(true)
  const r = stepReporter(s.out, () => now)
  for (let step = 1; step <= 100; step++) {
    now += 10
    r.update({ step, steps: 100, sigma: 1 })
  }
  r.end()
  const frames = s.text().split('\r').filter(f => f !== '')
  t.true(frames.length >= 9 && frames.length <= 12, `${frames.length} frames`)
  t.regex(frames.at(-1)!, /^steps +\[#{24}\] 100\/100 {2}100\.00 it\/s {2}ETA 0:00\x1b\[K\n$/)
  t.regex(frames[0], /^steps +\[\.{24}\] 1\/100/)
})

test('loading: bytes in a log per tenth; the download phase gets its own bar', t => {
  const s = sink(false)
  const r = loadReporter(s.out, () => 0)
  const total = 10 * 2 ** 20
  for (let b = 0; b <= total; b += 2 ** 18) r.update({ phase: 'download', file: 'unet/diffusion_pytorch_model.fp16.safetensors', loadedBytes: b, totalBytes: total })
  for (let b = 0; b <= 3 * 2 ** 30; b += 2 ** 28) r.update({ phase: 'load', component: 'unet', loadedBytes: b, totalBytes: 3 * 2 ** 30 })
  r.end()
  const lines = s.text().trimEnd().split('\n')
  t.is(lines.filter(l => l.startsWith('downloading: ')).length, 10)
  t.is(lines[0], 'downloading: 10% (1.0 MiB of 10.0 MiB)')
  t.is(lines[9], 'downloading: 100% (10.0 MiB of 10.0 MiB)')
  t.is(lines[10], 'loading: 16% (512.0 MiB of 3.00 GiB)')
  t.is(lines.at(-1), 'loading: 100% (3.00 GiB of 3.00 GiB)')
  const tty = sink(true)
  const rt = loadReporter(tty.out, () => 0)
  rt.update({ phase: 'load', component: 'vae', loadedBytes: 2 ** 20, totalBytes: 2 ** 21 })
  t.is(tty.text(), '\rloading     [############............] 1.0 MiB / 2.0 MiB  vae\x1b[K')
})

test('sizes and durations', t => {
  t.is(fmtSize(512), '1 KiB')
  t.is(fmtSize(5 * 2 ** 20), '5.0 MiB')
  t.is(fmtSize(6.9 * 2 ** 30), '6.90 GiB')
  t.is(fmtDuration(59.6), '1:00')
  t.is(fmtDuration(3 * 3600 + 65), '3:01:05')
})
