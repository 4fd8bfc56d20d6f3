// Ctrl-C (SIGINT) and SIGTERM (Windows: Ctrl-Break) during a one-shot CLI run, local or on a fleet: the first signal stops
// the work (the load and the run are aborted, a fleet's jobs cancelled) and runs the cleanups at once
// (temporary output files removed), so the command ends through its own error path; a second signal
// exits there and then, its cleanups already done.
import { AbortError } from '../errors'
import { STOP_SIGNALS as SIGNALS } from './stop-signals'

export interface Interrupt {
  /** aborted by the first signal */
  readonly signal: AbortSignal
  /** Runs `fn` on the first signal (at once if it came already). */
  onStop: (fn: () => unknown) => void
  /** Stops listening (the run is over). */
  dispose: () => void
}

/** Exit status of a run ended by a signal, as shells report one. */
export const INTERRUPTED = 130

export function catchInterrupts (say: (line: string) => void): Interrupt {
  const ac = new AbortController()
  const cleanups: Array<() => unknown> = []
  const run = (fn: () => unknown): void => { Promise.resolve().then(fn).catch(() => {}) }
  const first = (name: string): void => {
    say(`${name}: stopping; temporary files are removed (a second signal exits at once)`)
    for (const s of SIGNALS) { process.removeListener(s, first); process.once(s, second) }
    ac.abort(new AbortError(`interrupted by ${name}`))
    for (const fn of cleanups.splice(0)) run(fn)
  }
  const second = (): void => { process.exit(INTERRUPTED) }
  for (const s of SIGNALS) process.once(s, first)
  return {
    signal: ac.signal,
    onStop: fn => { if (ac.signal.aborted) run(fn); else cleanups.push(fn) },
    dispose: () => { for (const s of SIGNALS) { process.removeListener(s, first); process.removeListener(s, second) } }
  }
}
