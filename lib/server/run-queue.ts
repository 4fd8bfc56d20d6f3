// The server's queue: one generation runs at a time (the pipeline runs one anyway; a fleet front lets
// more through), the rest wait in order. A waiter whose client leaves gives its place up at once
// instead of holding it until its turn.
import { AbortError } from '../errors'

export class RunQueue {
  private active = 0
  private readonly waiters: Array<() => void> = []

  /** `slots`: runs at once */
  constructor (private readonly slots = 1) {}

  get running (): number { return this.active }
  get waiting (): number { return this.waiters.length }

  /** Resolves when it is the caller's turn (call done() after); rejects with an AbortError if `signal` aborts first. */
  async turn (signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw new AbortError()
    if (this.active < this.slots) { this.active++; return }
    await new Promise<void>((resolve, reject) => {
      const go = (): void => { signal.removeEventListener('abort', leave); resolve() }
      const leave = (): void => {
        this.waiters.splice(this.waiters.indexOf(go), 1)
        reject(new AbortError())
      }
      this.waiters.push(go)
      signal.addEventListener('abort', leave, { once: true })
    })
  }

  /** Ends the current turn and starts the next waiter's. */
  done (): void {
    const next = this.waiters.shift()
    if (next !== undefined) next()
    else this.active--
  }
}
