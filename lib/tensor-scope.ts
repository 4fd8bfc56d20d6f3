import type { NativeTensor } from './native'

/**
 * Device tensors that live until the block holding the scope ends, however it ends (`using`): a run's
 * temporaries are freed by leaving their block, not by a release on each path.
 *
 * ```ts
 * using scope = new TensorScope()
 * const a = scope.hold(ops.lincomb([[2, x]]))
 * x = scope.replace(x, next) // a loop's carried tensor: the old one freed, the new one held
 * return scope.take(result)  // handed out: the caller frees it
 * ```
 */
export class TensorScope implements Disposable {
  private readonly held = new Set<NativeTensor>()

  /** Holds `t` until the scope ends. */
  hold<T extends NativeTensor> (t: T): T {
    this.held.add(t)
    return t
  }

  /** Frees these now (held or not). */
  free (...ts: Array<NativeTensor | undefined>): void {
    for (const t of ts) {
      if (t === undefined) continue
      this.held.delete(t)
      t.dispose()
    }
  }

  /** Frees `old` and holds `next` in its place. */
  replace<T extends NativeTensor> (old: NativeTensor, next: T): T {
    if (old !== next) this.free(old)
    return this.hold(next)
  }

  /** Lets `t` outlive the scope: its caller frees it. */
  take<T extends NativeTensor> (t: T): T {
    this.held.delete(t)
    return t
  }

  [Symbol.dispose] (): void {
    for (const t of this.held) t.dispose()
    this.held.clear()
  }
}
