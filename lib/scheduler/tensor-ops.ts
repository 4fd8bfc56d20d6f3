/**
 * The one tensor operation the schedulers need: a linear combination of same-shaped tensors that
 * stay where they are (host memory, CPU backend, GPU). The scheduler computes the scalars.
 */
export interface TensorOps<T> {
  lincomb(terms: Array<[number, T]>): T
  /** Frees a tensor the scheduler no longer holds (a no-op for host arrays). */
  release(t: T): void
}

/** TensorOps over plain Float32Arrays, for host-side use and tests. */
export const hostOps: TensorOps<Float32Array> = {
  lincomb (terms) {
    const n = terms[0][1].length
    const out = new Float32Array(n)
    for (let i = 0; i < n; i++) {
      let acc = 0
      for (const [c, t] of terms) acc += c * t[i]
      out[i] = acc
    }
    return out
  },
  release () {}
}
