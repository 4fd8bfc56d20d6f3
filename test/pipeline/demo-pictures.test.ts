// The built-in demo model draws what the prompt says: pictures read back by pixel statistics
// (test/support/shape-world.ts) for prompts of its shape world, including colour/shape pairs it never saw;
// inpainting and img2img on it keep what they should.
import test from 'ava'
import { spawn } from 'node:child_process'
import path from 'node:path'
import sharp from 'sharp'
import { Pipeline } from '../../lib'
import { ensureDemoModel } from '../../lib/demo/demo-model'
import { HELD_BACK_PROMPTS, PALETTE, SEEN_PROMPTS, classify, score } from '../support/shape-world'

let pipe: Pipeline
test.before(async () => { pipe = await Pipeline.fromPretrained(await ensureDemoModel(), { device: 'cpu' }) })
test.after.always(async () => { await pipe?.dispose() })

const SEEDS = [1, 2]

test('at guidance 3 at least 90% of the pictures show the colours, shape and position asked for', async t => {
  const seen = await score(pipe, SEEN_PROMPTS, SEEDS, 3)
  const held = await score(pipe, HELD_BACK_PROMPTS, SEEDS, 3)
  const right = seen.right + held.right
  const total = seen.total + held.total
  t.log(`guidance 3: all right ${right}/${total} (seen pairs ${seen.right}/${seen.total}, held-back pairs ${held.right}/${held.total}); ` +
    `colours right ${seen.colours + held.colours}/${total}`)
  for (const w of [...seen.wrong, ...held.wrong]) t.log(`not all right: ${w}`)
  const off = await score(pipe, [...SEEN_PROMPTS, ...HELD_BACK_PROMPTS], SEEDS, 1)
  t.log(`guidance 1 (no classifier-free guidance): all right ${off.right}/${off.total}, colours right ${off.colours}/${off.total}`)
  t.true(right / total >= 0.9, `${right}/${total}`)
})

/** The mean absolute difference (levels of 255) over the pixels where `where(x, y)` holds. */
function meanDiff (a: Uint8Array, b: Uint8Array, w: number, where: (x: number, y: number) => boolean): number {
  let sum = 0
  let n = 0
  for (let i = 0; i < a.length; i++) {
    const p = Math.floor(i / 3)
    if (!where(p % w, Math.floor(p / w))) continue
    sum += Math.abs(a[i] - b[i])
    n++
  }
  return sum / n
}

const nearestIsGreen = (d: Uint8Array, p: number): boolean => {
  const dist = (c: number[]): number => (d[3 * p] - c[0]) ** 2 + (d[3 * p + 1] - c[1]) ** 2 + (d[3 * p + 2] - c[2]) ** 2
  return Object.values(PALETTE).every(c => dist(PALETTE.green) <= dist(c))
}

test('inpainting the middle with "a green square" turns it green and keeps the rest', async t => {
  const [w, h] = [128, 128]
  const input = (await pipe.generate('a red circle on a blue background', { seed: 1, steps: 20, width: w, height: h })).images[0]
  const inMask = (x: number, y: number): boolean => x >= 28 && x < 100 && y >= 28 && y < 100
  const mask = { width: w, height: h, data: new Uint8Array(w * h * 3) }
  for (let p = 0; p < w * h; p++) if (inMask(p % w, Math.floor(p / w))) mask.data.fill(255, 3 * p, 3 * p + 3)
  const out = (await pipe.generate('a green square', { image: input, mask, seed: 3, steps: 20 })).images[0]
  // An all-black mask keeps every latent cell: the input as the VAE reproduces it, from the same encoder draw.
  const keepAll = { width: w, height: h, data: new Uint8Array(w * h * 3) }
  const roundTrip = (await pipe.generate('a green square', { image: input, mask: keepAll, seed: 3, steps: 20 })).images[0]
  let green = 0
  for (let p = 0; p < w * h; p++) if (inMask(p % w, Math.floor(p / w)) && nearestIsGreen(out.data, p)) green++
  const share = green / (72 * 72)
  // Away from the mask's edge (the decoder's reach) the picture is the input as the VAE reproduces it.
  const far = (x: number, y: number): boolean => x < 20 || x >= 108 || y < 20 || y >= 108
  const kept = meanDiff(out.data, roundTrip.data, w, far)
  const fromInput = meanDiff(out.data, input.data, w, far)
  t.log(`green share of the mask ${share.toFixed(2)}; away from it ${kept.toFixed(2)} levels from the VAE's copy, ${fromInput.toFixed(2)} from the input`)
  t.true(share >= 0.4, `green share ${share}`)
  t.true(kept <= 3, `kept region differs from the VAE's copy by ${kept} levels`)
})

test('img2img at strength 0.3 keeps the layout', async t => {
  const prompt = 'a yellow star in the bottom right corner on a purple background'
  const input = (await pipe.generate(prompt, { seed: 4, steps: 20, width: 128, height: 128 })).images[0]
  const out = (await pipe.generate(prompt, { image: input, strength: 0.3, seed: 5, steps: 20 })).images[0]
  const [a, b] = [classify(input), classify(out)]
  t.log(`input ${JSON.stringify(a)}, output ${JSON.stringify(b)}, mean difference ${meanDiff(out.data, input.data, 128, () => true).toFixed(2)}`)
  // The layout: where the object is, its shape and the background (its tint may drift: that is not layout).
  t.deepEqual([b.shape, b.position, b.background], [a.shape, a.position, a.background])
  t.true(Math.abs(a.fill - b.fill) <= 0.1)
})

test('pg25 serve without --model serves the demo model', async t => {
  const env: NodeJS.ProcessEnv = { ...process.env }
  delete env.PG25_MODEL
  const cli = path.join(__dirname, '..', '..', 'lib', 'cli', 'index.js')
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0', '--device', 'cpu'], { env, stdio: ['ignore', 'ignore', 'pipe'] })
  try {
    let stderr = ''
    child.stderr!.on('data', d => { stderr += String(d) })
    for (let i = 0; i < 600 && !/listening on http:\/\/127\.0\.0\.1:\d+/.test(stderr); i++) await new Promise(resolve => setTimeout(resolve, 50))
    const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)?.[1]
    t.truthy(port, stderr)
    t.regex(stderr, /built-in demo model/)
    const prompt = 'a red circle on a blue background'
    const r = await fetch(`http://127.0.0.1:${port}/generate`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt, seed: 1, steps: 20 })
    })
    t.is(r.status, 200)
    const { data, info } = await sharp(Buffer.from(await r.arrayBuffer())).removeAlpha().raw().toBuffer({ resolveWithObject: true })
    const served = { width: info.width, height: info.height, data: new Uint8Array(data) }
    const local = (await pipe.generate(prompt, { seed: 1, steps: 20 })).images[0]
    t.deepEqual(classify(served), classify(local))
    t.true(Buffer.from(served.data).equals(Buffer.from(local.data)), 'the same image as the API gives')
  } finally {
    child.kill('SIGTERM')
  }
})
