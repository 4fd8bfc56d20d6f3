// The picture tests' reader (test/support/shape-world.ts) on the shape world's own shapes, drawn here with the
// geometry and jitter of scripts/demo-model/world.py: sharp, and softened by a box blur as a small VAE decoder
// softens edges (a star's inner corners fill in, a small square's corners round). It must read every one right, so a
// wrong demo picture is the model's doing, not the reader's.
import test from 'ava'
import type { RGBImage } from '../../lib/image'
import { PALETTE, classify, type Reading } from '../support/shape-world'

const SIZE = 128
const SHAPES = ['circle', 'square', 'triangle', 'star'] as const
type Shape = typeof SHAPES[number]
const RADII = { small: 18, default: 30, large: 44 }
const CENTRES: Record<string, [number, number]> = {
  center: [64, 64], 'top left': [34, 34], 'top right': [94, 34], 'bottom left': [34, 94], 'bottom right': [94, 94]
}

/** Whether (x, y), relative to the shape's centre, is inside it (world.py's shape_mask). */
function inside (shape: Shape, x: number, y: number, r: number): boolean {
  if (shape === 'circle') return x * x + y * y <= r * r
  if (shape === 'square') return Math.abs(x) <= 0.85 * r && Math.abs(y) <= 0.85 * r
  if (shape === 'triangle') {
    const t = (y + r) / (2 * r)
    return t >= 0 && t <= 1 && Math.abs(x) <= t * r
  }
  // A five-pointed star, one point up, inner radius 0.4 r: inside when nearer than its edge at that angle.
  const half = Math.PI / 5
  const ang = ((Math.atan2(x, -y) % (2 * half)) + 2 * half) % (2 * half)
  const a = Math.min(ang, 2 * half - ang)
  const [p1x, p1y] = [0, r]
  const [dx, dy] = [Math.sin(half) * 0.4 * r - p1x, Math.cos(half) * 0.4 * r - p1y]
  const t = (Math.cos(a) * p1x - Math.sin(a) * p1y) / (Math.sin(a) * dy - Math.cos(a) * dx)
  return Math.hypot(x, y) <= Math.hypot(p1x + t * dx, p1y + t * dy)
}

/** One shape on a background, anti-aliased by 4x4 supersampling, then box-blurred `blur` pixels each way. */
function draw (shape: Shape, colour: string, background: string, [cx, cy]: [number, number], r: number, blur: number): RGBImage {
  const img = new Float32Array(SIZE * SIZE * 3)
  for (let py = 0; py < SIZE; py++) {
    for (let px = 0; px < SIZE; px++) {
      let cover = 0
      const near = Math.abs(px - cx) <= r + 2 && Math.abs(py - cy) <= r + 2
      for (let s = 0; s < 16 && near; s++) {
        if (inside(shape, px + ((s % 4) + 0.5) / 4 - cx, py + (Math.floor(s / 4) + 0.5) / 4 - cy, r)) cover++
      }
      const [fg, bg] = [PALETTE[colour], PALETTE[background]]
      for (let c = 0; c < 3; c++) img[(py * SIZE + px) * 3 + c] = bg[c] + (fg[c] - bg[c]) * cover / 16
    }
  }
  for (let pass = 0; pass < 2 && blur > 0; pass++) {
    const src = img.slice()
    for (let py = 0; py < SIZE; py++) {
      for (let px = 0; px < SIZE; px++) {
        for (let c = 0; c < 3; c++) {
          let sum = 0
          let n = 0
          for (let k = -blur; k <= blur; k++) {
            const [x, y] = pass === 0 ? [px + k, py] : [px, py + k]
            if (x < 0 || y < 0 || x >= SIZE || y >= SIZE) continue
            sum += src[(y * SIZE + x) * 3 + c]
            n++
          }
          img[(py * SIZE + px) * 3 + c] = sum / n
        }
      }
    }
  }
  return { width: SIZE, height: SIZE, data: Uint8Array.from(img, v => Math.round(v)) }
}

/** A seeded uniform draw in [lo, hi) (a 32-bit LCG): the jitter world.py's render adds to each shape. */
function jitter (seed: number): (lo: number, hi: number) => number {
  let x = seed >>> 0
  return (lo, hi) => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0
    return lo + (hi - lo) * x / 2 ** 32
  }
}

const PAIRS: Array<[string, string]> = [['red', 'blue'], ['yellow', 'black'], ['white', 'green'], ['purple', 'yellow'], ['orange', 'white']]

for (const blur of [0, 1, 2]) {
  test(`the reader names every shape, colour and place of the world${blur > 0 ? ` softened by a ${2 * blur + 1}-pixel box blur` : ''}`, t => {
    const wrong: string[] = []
    const draw1 = jitter(blur + 1)
    let n = 0
    for (const shape of SHAPES) {
      for (const [place, centre] of Object.entries(CENTRES)) {
        for (const [size, r] of Object.entries(RADII)) {
          if (place !== 'center' && size === 'large') continue // world.py puts large shapes only in the centre
          const [colour, background] = PAIRS[n++ % PAIRS.length]
          // As world.py renders: the centre moved up to 4 pixels each way, the size by up to 10%.
          const at: [number, number] = [centre[0] + draw1(-4, 4), centre[1] + draw1(-4, 4)]
          const got: Reading = classify(draw(shape, colour, background, at, r * draw1(0.9, 1.1), blur))
          const want = { colour, background, shape, position: place }
          const read = [got.colour, got.background, got.shape, got.position]
          if (JSON.stringify(read) !== JSON.stringify([want.colour, want.background, want.shape, want.position])) {
            wrong.push(`${size} ${colour} ${shape} ${place} on ${background}: read ${got.colour} ${got.shape} ${got.position} on ${got.background} ` +
              `(fill ${got.fill.toFixed(2)}, foot ${got.foot.toFixed(2)}, corners ${got.corners.toFixed(2)})`)
          }
        }
      }
    }
    t.is(n, 4 * (5 * 2 + 1))
    t.deepEqual(wrong, [])
  })
}
