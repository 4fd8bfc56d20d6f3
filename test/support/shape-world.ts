// Reads the demo model's pictures by pixel statistics: which palette colour fills the border (the
// background), which other colour dominates (the object), how much of its bounding box and of three parts of
// it the object fills (its shape) and where its box sits (its position). The palette and shapes are those of
// scripts/demo-model/world.py, the world the demo model was trained on; test/unit/shape-world.test.ts checks
// the reading on that world's shapes drawn here, sharp and softened as a decoder softens edges.
import type { Pipeline } from '../../lib'
import type { RGBImage } from '../../lib/image'

export const PALETTE: Record<string, [number, number, number]> = {
  red: [220, 30, 30], orange: [245, 140, 20], yellow: [240, 220, 30], green: [30, 170, 50],
  blue: [30, 70, 220], purple: [140, 40, 190], white: [245, 245, 245], black: [20, 20, 20]
}
const NAMES = Object.keys(PALETTE)

/** `fill`: of the object's bounding box; `foot`: of its bottom-centre part; `corners`: of its four corner parts. */
export interface Reading {
  background: string, colour: string, shape: string, position: string, fill: number, foot: number, corners: number
}

/** What a prompt of the world's grammar asks for ("a small red circle in the top left corner on a blue background"). */
export function expected (prompt: string): Omit<Reading, 'fill' | 'foot' | 'corners' | 'background'> & { background: string | null } {
  const m = /^a (?:small |large )?(\w+) (circle|square|triangle|star)(?: in the (top left|top right|bottom left|bottom right) corner)?(?: on a (\w+) background)?$/.exec(prompt)
  if (!m) throw new Error(`not a shape-world prompt: ${prompt}`)
  return { colour: m[1], shape: m[2], position: m[3] ?? 'center', background: m[4] ?? null }
}

function nearest (r: number, g: number, b: number): number {
  let best = 0
  let bestD = Infinity
  NAMES.forEach((n, i) => {
    const [pr, pg, pb] = PALETTE[n]
    const d = (r - pr) ** 2 + (g - pg) ** 2 + (b - pb) ** 2
    if (d < bestD) { bestD = d; best = i }
  })
  return best
}

function mode (counts: number[], skip = -1): number {
  let best = -1
  counts.forEach((c, i) => { if (i !== skip && (best < 0 || c > counts[best])) best = i })
  return best
}

/**
 * The shape from three fills, each robust to softened edges where the box's fill alone is not (a star with
 * rounded inner corners fills half its box, as a triangle does; a small square with rounded corners fills
 * 0.85, near a circle's 0.79). Within the bounding box: its bottom-centre part (the middle fifth of the columns,
 * the bottom fifth of the rows) is the gap between a star's two lower points, and solid under the other three
 * shapes; its four corner fifths are solid in a square, about a seventh filled in a circle, and about 0.37 on
 * average in an upright triangle (its base corners three quarters full, its top ones empty).
 */
function shapeOf (fill: number, foot: number, corners: number): string {
  if (foot < 0.5) return 'star'
  if (corners > 0.65) return 'square'
  return fill > 0.65 ? 'circle' : 'triangle'
}

function positionOf (cx: number, cy: number, w: number, h: number): string {
  const col = cx < w * 0.4 ? 'left' : cx > w * 0.6 ? 'right' : 'middle'
  const row = cy < h * 0.4 ? 'top' : cy > h * 0.6 ? 'bottom' : 'middle'
  return col === 'middle' && row === 'middle' ? 'center' : `${row} ${col}`
}

/** Reads one picture holding a single object. */
export function classify (img: RGBImage): Reading {
  const { width: w, height: h, data } = img
  const label = new Int8Array(w * h)
  for (let i = 0; i < w * h; i++) label[i] = nearest(data[3 * i], data[3 * i + 1], data[3 * i + 2])
  const border = new Array<number>(NAMES.length).fill(0)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) if (x < 2 || y < 2 || x >= w - 2 || y >= h - 2) border[label[y * w + x]]++
  }
  const bg = mode(border)
  const all = new Array<number>(NAMES.length).fill(0)
  for (let i = 0; i < w * h; i++) all[label[i]]++
  const fg = mode(all, bg)
  let [x0, y0, x1, y1, n] = [w, h, -1, -1, 0]
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (label[y * w + x] !== fg) continue
      n++
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y)
    }
  }
  const fill = n === 0 ? 0 : n / ((x1 - x0 + 1) * (y1 - y0 + 1))
  // The share of the object's pixels over the part [fx0, fx1) x [fy0, fy1) of the box, in fractions of it.
  const part = (fx0: number, fx1: number, fy0: number, fy1: number): number => {
    const bw = x1 - x0 + 1
    const bh = y1 - y0 + 1
    const [px0, px1, py0, py1] = [x0 + Math.floor(fx0 * bw), x0 + Math.ceil(fx1 * bw), y0 + Math.floor(fy0 * bh), y0 + Math.ceil(fy1 * bh)]
    let inside = 0
    for (let y = py0; y < py1; y++) for (let x = px0; x < px1; x++) if (label[y * w + x] === fg) inside++
    return inside / Math.max(1, (px1 - px0) * (py1 - py0))
  }
  const foot = n === 0 ? 0 : part(0.4, 0.6, 0.8, 1)
  const corners = n === 0 ? 0 : (part(0, 0.2, 0, 0.2) + part(0.8, 1, 0, 0.2) + part(0, 0.2, 0.8, 1) + part(0.8, 1, 0.8, 1)) / 4
  return {
    background: NAMES[bg],
    colour: NAMES[fg],
    shape: shapeOf(fill, foot, corners),
    position: positionOf((x0 + x1) / 2, (y0 + y1) / 2, w, h),
    fill,
    foot,
    corners
  }
}

/** Whether a picture has the colours its prompt asks for (a background the prompt leaves open may be any colour). */
export function coloursMatch (prompt: string, r: Reading): boolean {
  const e = expected(prompt)
  return r.colour === e.colour && (e.background === null || r.background === e.background)
}

/** Whether a picture shows everything its prompt asks for: colours, shape and position. */
export function matches (prompt: string, r: Reading): boolean {
  const e = expected(prompt)
  return coloursMatch(prompt, r) && r.shape === e.shape && r.position === e.position
}

/** Prompts the picture tests ask for: each shape, colour and position, and (last four) the pairs training never showed. */
export const SEEN_PROMPTS = [
  'a red circle on a blue background', 'a yellow square on a black background', 'a blue triangle on a white background',
  'a white star on a red background', 'a green square on a purple background', 'a black circle on a yellow background',
  'a orange triangle on a green background', 'a purple star on a yellow background', 'a small red square in the top left corner on a white background',
  'a yellow circle in the bottom right corner on a blue background', 'a large blue star on a black background', 'a white circle in the top right corner on a green background'
]
export const HELD_BACK_PROMPTS = [
  'a purple circle on a white background', 'a orange square on a blue background', 'a white triangle on a black background', 'a green star on a yellow background'
]

/** `right`: pictures that show everything asked; `colours`: those with the right object and background colour. */
export interface Score { right: number, colours: number, total: number, wrong: string[] }

/** Generates each prompt at each seed (128x128, 20 steps) and counts the pictures that show what was asked. */
export async function score (pipe: Pipeline, prompts: string[], seeds: number[], guidanceScale: number): Promise<Score> {
  const s: Score = { right: 0, colours: 0, total: 0, wrong: [] }
  for (const prompt of prompts) {
    for (const seed of seeds) {
      const { images } = await pipe.generate(prompt, { seed, steps: 20, guidanceScale, width: 128, height: 128 })
      const r = classify(images[0])
      s.total++
      if (coloursMatch(prompt, r)) s.colours++
      if (matches(prompt, r)) s.right++
      else s.wrong.push(`${prompt} (seed ${seed}): ${r.colour} ${r.shape} (fill ${r.fill.toFixed(2)}, foot ${r.foot.toFixed(2)}, corners ${r.corners.toFixed(2)}) ${r.position} on ${r.background}`)
    }
  }
  return s
}
