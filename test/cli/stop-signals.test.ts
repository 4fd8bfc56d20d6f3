// `pg25 serve` and `pg25 worker` stop on this platform's stop signals (STOP_SIGNALS: SIGINT and SIGTERM,
// on Windows SIGINT and Ctrl-Break's SIGBREAK, as Windows delivers no SIGTERM). Run in this process, the
// signal emitted to it: Node on Windows cannot send a console signal to another process, and under Wine
// (scripts/wine-job.sh) this is how the Windows listeners are proven.
import test from 'ava'
import { serveCommand } from '../../lib/cli/serve'
import { STOP_SIGNALS } from '../../lib/cli/stop-signals'
import { workerCommand } from '../../lib/cli/worker'
import { TINY } from '../support/helpers'

const SECOND = STOP_SIGNALS[1]

test('the stop signals are Ctrl-C and, where there is one, SIGTERM; on Windows Ctrl-Break', t => {
  t.deepEqual([...STOP_SIGNALS], process.platform === 'win32' ? ['SIGINT', 'SIGBREAK'] : ['SIGINT', 'SIGTERM'])
})

/** Runs `fn` with stderr captured: what it wrote so far, and its result (a message if it has not ended within `ms`). */
function capture (fn: () => Promise<number>, ms: number): { stderr: () => string, done: Promise<number | string> } {
  let text = ''
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: string | Uint8Array) => { text += String(chunk); return true }) as typeof process.stderr.write
  const done = Promise.race([fn(), new Promise<string>(resolve => setTimeout(() => resolve(`still running after ${ms / 1000} s`), ms).unref())])
    .finally(() => { process.stderr.write = write })
  return { stderr: () => text, done }
}

test.serial(`pg25 serve stops on ${SECOND}: it cancels, shuts down and resolves 0`, async t => {
  const run = capture(async () => await serveCommand(['--model', TINY, '--port', '0', '--device', 'cpu']), 60_000)
  for (let i = 0; i < 600 && !/listening on/.test(run.stderr()); i++) await new Promise(resolve => setTimeout(resolve, 50))
  process.emit(SECOND as NodeJS.Signals)
  t.is(await run.done, 0, run.stderr())
  t.is(process.listenerCount(SECOND), 0, 'it stopped listening')
  t.regex(run.stderr(), new RegExp(`listening on http://127\\.0\\.0\\.1:\\d+[^]*${SECOND}: cancelling running requests and shutting down[^]*stopped`))
})

test.serial(`pg25 worker stops on ${SECOND} while its model loads`, async t => {
  const run = capture(async () => {
    const before = process.listenerCount(SECOND)
    const running = workerCommand(['--model', TINY, '--redis', 'redis://127.0.0.1:1', '--device', 'cpu'])
    // Emitted once the command listens (it parses its flags first), while its model is still loading.
    while (process.listenerCount(SECOND) === before) await new Promise(resolve => setImmediate(resolve))
    process.emit(SECOND as NodeJS.Signals)
    return await running
  }, 60_000)
  t.is(await run.done, 0, run.stderr())
  t.regex(run.stderr(), new RegExp(`${SECOND} while loading: stopped`))
  t.is(process.listenerCount(SECOND), 0, 'it stopped listening')
})
