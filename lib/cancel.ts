// AbortSignal -> the addon's CancelToken, which native jobs check between blocks, so an abort stops
// a UNet call, VAE pass or text encoder part-way instead of after it.
import { loadNative, type CancelToken } from './native'

export type { CancelToken }

/**
 * Runs `fn` with a token that is cancelled when `signal` aborts (undefined without a signal). The
 * listener is removed afterwards, so long-lived signals collect no handlers.
 */
export async function withCancel<T> (signal: AbortSignal | undefined, fn: (token: CancelToken | undefined) => Promise<T>): Promise<T> {
  if (signal === undefined) return await fn(undefined)
  const token = new (loadNative()).CancelToken()
  const onAbort = (): void => { token.cancel() }
  if (signal.aborted) token.cancel()
  else signal.addEventListener('abort', onAbort, { once: true })
  try {
    return await fn(token)
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/**
 * A signal that aborts when any of `signals` does, with `unlink()` to drop its listeners (unlike
 * AbortSignal.any, nothing stays attached to a long-lived source after the run).
 */
export function linkSignals (...signals: Array<AbortSignal | undefined>): { signal: AbortSignal, unlink: () => void } {
  const ac = new AbortController()
  const sources = signals.filter((s): s is AbortSignal => s !== undefined)
  const onAbort = (e: Event): void => { ac.abort((e.target as AbortSignal).reason) }
  for (const s of sources) {
    if (s.aborted) ac.abort(s.reason)
    else s.addEventListener('abort', onAbort, { once: true })
  }
  return { signal: ac.signal, unlink: () => { for (const s of sources) s.removeEventListener('abort', onAbort) } }
}
