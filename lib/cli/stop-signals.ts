// The signals that stop a CLI command: Ctrl-C (SIGINT) everywhere, and SIGTERM where there is one.
// Windows delivers no SIGTERM (a process is ended there without one); Ctrl-Break (SIGBREAK) is its
// second way to stop a console program, and what service wrappers such as NSSM send.
export const STOP_SIGNALS = process.platform === 'win32' ? ['SIGINT', 'SIGBREAK'] as const : ['SIGINT', 'SIGTERM'] as const

/** Calls `fn` with each stop signal that comes, until the returned function is called. */
export function onStopSignals (fn: (signal: (typeof STOP_SIGNALS)[number]) => void): () => void {
  const handlers = STOP_SIGNALS.map(s => [s, () => fn(s)] as const)
  for (const [s, h] of handlers) process.on(s, h)
  return () => { for (const [s, h] of handlers) process.removeListener(s, h) }
}
