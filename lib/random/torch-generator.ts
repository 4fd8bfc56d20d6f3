/**
 * `torch.Generator('cpu').manual_seed(seed)` and `torch.randn(shape, generator=g)` in float32,
 * reproduced bit for bit in their random stream: the same mt19937 engine and the same normal
 * sampling (Box-Muller over blocks of 16 for tensors of 16 or more elements, the cached scalar
 * path below that). This is what makes a seed give the same image as diffusers.
 *
 * ```ts
 * const g = new TorchGenerator(42)
 * const noise = g.randn([1, 4, 128, 128]) // Float32Array, equal to torch.randn(..., generator=g)
 * ```
 */
export class TorchGenerator {
  private readonly mt = new Uint32Array(624)
  private index = 624
  private cachedNormal: number | null = null

  constructor (seed: number | bigint) {
    this.manualSeed(seed)
  }

  manualSeed (seed: number | bigint): this {
    const s = BigInt.asUintN(64, BigInt(seed))
    this.mt[0] = Number(s & 0xffffffffn)
    for (let i = 1; i < 624; i++) {
      const prev = this.mt[i - 1] ^ (this.mt[i - 1] >>> 30)
      this.mt[i] = (Math.imul(1812433253, prev) + i) >>> 0
    }
    this.index = 624
    this.cachedNormal = null
    return this
  }

  /** The next 32-bit output of mt19937. */
  random (): number {
    if (this.index >= 624) this.twist()
    let y = this.mt[this.index++]
    y ^= y >>> 11
    y ^= (y << 7) & 0x9d2c5680
    y ^= (y << 15) & 0xefc60000
    y ^= y >>> 18
    return y >>> 0
  }

  /** Standard normal float32 values, as torch.randn draws them for this many elements. */
  randn (shape: readonly number[]): Float32Array {
    const n = shape.reduce((a, b) => a * b, 1)
    const out = new Float32Array(n)
    if (n >= 16) {
      for (let i = 0; i < n; i++) out[i] = this.uniform24()
      for (let i = 0; i + 16 <= n; i += 16) normalFill16(out, i)
      if (n % 16 !== 0) {
        // torch redraws the last 16 values and transforms them again.
        for (let i = n - 16; i < n; i++) out[i] = this.uniform24()
        normalFill16(out, n - 16)
      }
    } else {
      for (let i = 0; i < n; i++) out[i] = this.normalDouble()
    }
    return out
  }

  private uniform24 (): number {
    return (this.random() & 0xffffff) / 16777216
  }

  private uniform53 (): number {
    const hi = this.random()
    const lo = this.random()
    // make64BitsFrom32Bits(hi, lo) masked to 53 bits, over 2^53
    return ((hi & 0x1fffff) * 4294967296 + lo) / 9007199254740992
  }

  private normalDouble (): number {
    if (this.cachedNormal !== null) {
      const v = this.cachedNormal
      this.cachedNormal = null
      return v
    }
    const u1 = this.uniform53()
    const u2 = this.uniform53()
    const r = Math.sqrt(-2 * Math.log1p(-u2))
    const theta = 2 * Math.PI * u1
    this.cachedNormal = r * Math.sin(theta)
    return r * Math.cos(theta)
  }

  private twist (): void {
    const mt = this.mt
    for (let i = 0; i < 624; i++) {
      const y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7fffffff)
      let v = mt[(i + 397) % 624] ^ (y >>> 1)
      if (y & 1) v ^= 0x9908b0df
      mt[i] = v >>> 0
    }
    this.index = 0
  }
}

// Box-Muller on 16 uniforms, in float32 arithmetic as torch's vectorised CPU kernel computes it.
const f32 = Math.fround
const TWO_PI_F32 = f32(2 * Math.PI)
function normalFill16 (data: Float32Array, at: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f32(1 - data[at + j])
    const u2 = data[at + j + 8]
    const radius = f32(Math.sqrt(f32(-2 * f32(Math.log(u1)))))
    const theta = f32(TWO_PI_F32 * u2)
    data[at + j] = radius * f32(Math.cos(theta))
    data[at + j + 8] = radius * f32(Math.sin(theta))
  }
}
