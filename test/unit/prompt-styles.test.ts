// Prompt styles against their references: fixtures from AUTOMATIC1111's and ComfyUI's own code
// (scripts/prompt-fixtures/make_fixtures.py) over tiny-pg25's text encoders.
import test from 'ava'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { Pipeline } from '../../lib/pipeline'
import { CLIPTokenizer } from '../../lib/tokenizer/clip-tokenizer'
import { planPrompts } from '../../lib/prompt/plan'
import { parseA1111, parseComfy } from '../../lib/prompt/parse'
import type { StyledPlan } from '../../lib/prompt/conditioning'
import { checkRequestMemory, requestBytes } from '../../lib/memory'
import { TINY, maxAbsDiff, relativeError } from '../support/helpers'

interface Case {
  name: string, prompt: string, prompt2?: string, error?: string
  ids_l: number[][], ids_g: number[][], weights_l?: number[][], tokens: number, embeds: string, pooled: string
}
const fixture = JSON.parse(readFileSync(path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'prompt-styles.json'), 'utf8'))
const f32 = (b64: string): Float32Array => {
  const b = Buffer.from(b64, 'base64')
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))
}

let pipe: Pipeline
let toks: [CLIPTokenizer, CLIPTokenizer]
test.before(async () => {
  pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  const load = async (d: string): Promise<CLIPTokenizer> => await CLIPTokenizer.fromPretrained(path.join(TINY, d))
  toks = [await load('tokenizer'), await load('tokenizer_2')]
})
test.after.always(async () => { await pipe?.dispose() })

/** Every `stride`-th channel of [tokens, dim], as the fixture keeps them. */
function strided (a: Float32Array, tokens: number, dim: number, stride: number): Float32Array {
  const out = new Float32Array(tokens * dim / stride)
  for (let t = 0; t < tokens; t++) for (let c = 0; c < dim / stride; c++) out[t * (dim / stride) + c] = a[t * dim + c * stride]
  return out
}

test('the fixtures name each reference file at its commit', t => {
  for (const name of ['a1111', 'comfy']) {
    for (const f of fixture.references[name].files) {
      t.regex(f.commit, /^[0-9a-f]{40}$/)
      t.regex(f.sha256, /^[0-9a-f]{64}$/)
    }
  }
  t.true(fixture.a1111.length >= 15 && fixture.comfy.length >= 16)
})

for (const style of ['a1111', 'comfy'] as const) {
  test(`${style}: chunks (ids and weights) are the reference's for every case`, t => {
    for (const c of fixture[style] as Case[]) {
      if (c.error !== undefined) continue
      const plan = planPrompts(toks, style, { prompt: c.prompt, prompt2: c.prompt2 }, false) as StyledPlan
      t.deepEqual(plan.pos.l.map(k => k.ids), c.ids_l, `${c.name}: CLIP-L ids`)
      t.deepEqual(plan.pos.g.map(k => k.ids), c.ids_g, `${c.name}: CLIP-G ids`)
      t.is(plan.tokens, c.tokens, c.name)
      if (c.weights_l !== undefined) t.deepEqual(plan.pos.l.map(k => k.weights), c.weights_l, `${c.name}: weights`)
    }
  })

  test(`${style}: weighted embeddings of both encoders and the pooled output within 1e-5 of the reference`, async t => {
    const dim = 64
    for (const c of fixture[style] as Case[]) {
      if (c.error !== undefined) continue
      const r = await pipe.encodePrompt(c.prompt, { promptStyle: style, prompt2: c.prompt2, guidanceScale: 1 })
      t.is(r.rows, 1)
      t.is(r.tokens, c.tokens, c.name)
      const ours = strided(r.embeds, r.tokens, dim, fixture.stride)
      const ref = f32(c.embeds)
      const err = relativeError(ours, ref)
      t.true(err <= 1e-5, `${c.name}: embeddings ${err}`)
      // Both encoders' halves, so that weighting on either one counts.
      const half = dim / fixture.stride / 2
      for (const side of [0, 1]) {
        const pick = (a: Float32Array): number[] => Array.from(a).filter((_, i) => Math.floor((i % (2 * half)) / half) === side)
        t.true(relativeError(pick(ours), pick(ref)) <= 1e-5, `${c.name}: encoder ${side + 1}`)
      }
      t.true(relativeError(r.pooled, f32(c.pooled)) <= 1e-5, `${c.name}: pooled ${relativeError(r.pooled, f32(c.pooled))}`)
    }
  })
}

test('weighting changes the embeddings of both encoders, and not the pooled output', async t => {
  const plain = await pipe.encodePrompt('a red cat', { guidanceScale: 1 })
  const weighted = await pipe.encodePrompt('a (red:1.5) cat', { guidanceScale: 1 })
  const dim = 64
  for (const [lo, hi] of [[0, 32], [32, 64]]) {
    let d = 0
    for (let i = 0; i < plain.embeds.length; i++) {
      if (i % dim >= lo && i % dim < hi) d = Math.max(d, Math.abs(plain.embeds[i] - weighted.embeds[i]))
    }
    t.true(d > 1e-3, `channels ${lo}-${hi}: ${d}`)
  }
  t.deepEqual(weighted.pooled, plain.pooled)
})

test('A1111 refuses (x:1.2.3); we read the weight as text and go on', async t => {
  const c = (fixture.a1111 as Case[]).find(x => x.error !== undefined)!
  t.regex(c.error!, /could not convert string to float/)
  t.deepEqual(parseA1111('(w:1.2.3)').map(s => s.text).join(''), 'w:1.2.3)')
  const r = await pipe.encodePrompt(c.prompt, { guidanceScale: 1 })
  t.is(r.tokens, 77)
})

test('unbalanced and odd syntax never throws, in either style', t => {
  const odd = ['(', ')', '[', ']', '((((', '))))', '\\', '(a:', '(:1)', 'BREAKBREAK', 'a BREAK', '(a BREAK b)', '\\(\\)', '(()))((',
    '[[[]]]]', ':1.5)']
  for (const text of odd) {
    t.notThrows(() => parseA1111(text), text)
    t.notThrows(() => parseComfy(text), text)
    t.notThrows(() => planPrompts(toks, 'a1111', { prompt: text }, true), text)
    t.notThrows(() => planPrompts(toks, 'comfy', { prompt: text }, true), text)
  }
})

test('a long prompt changes the latents past token 77 (a1111, comfy); plain cuts it there', async t => {
  const long = Array(40).fill('a castle').join(', ')
  const run = async (tail: string, promptStyle: 'a1111' | 'comfy' | 'plain'): Promise<Float32Array> =>
    (await pipe.generate(`${long}, ${tail}`, { steps: 2, width: 64, height: 64, seed: 3, outputType: 'latent', promptStyle })).latents!
  for (const style of ['a1111', 'comfy'] as const) t.true(maxAbsDiff(await run('red', style), await run('blue', style)) > 1e-3, style)
  t.is(maxAbsDiff(await run('red', 'plain'), await run('blue', 'plain')), 0)
})

test('positive and negative get one length: A1111 pads with the empty prompt, ComfyUI repeats to their lcm', async t => {
  const p2 = Array(80).fill('cat').join(' ') // 2 chunks
  const p3 = Array(160).fill('cat').join(' ') // 3 chunks
  const a = planPrompts(toks, 'a1111', { prompt: p2, negativePrompt: p3 }, true)
  t.is(a.tokens, 3 * 77)
  const c = planPrompts(toks, 'comfy', { prompt: p2, negativePrompt: p3 }, true)
  t.is(c.tokens, 6 * 77)
  const dim = 64
  const r = await pipe.encodePrompt('a cat', { negativePrompt: p2 })
  t.is(r.rows, 2)
  t.is(r.tokens, 154)
  const empty = await pipe.encodePrompt('', { guidanceScale: 1, negativePrompt: undefined })
  // The positive half's second chunk is the empty prompt's (A1111's pad_cond).
  const second = r.embeds.subarray((r.tokens + 77) * dim, (r.tokens + 154) * dim)
  t.true(relativeError(second, empty.embeds) <= 1e-6)
  const rc = await pipe.encodePrompt('a cat', { negativePrompt: p2, promptStyle: 'comfy' })
  const pos = rc.embeds.subarray(rc.tokens * dim)
  t.deepEqual(pos.subarray(77 * dim), pos.subarray(0, 77 * dim)) // repeated
})

test('the default (a1111) gives plain prompts exactly the plain style\'s latents', async t => {
  const opts = { steps: 2, width: 64, height: 64, seed: 9, outputType: 'latent' as const, negativePrompt: 'blurry, low quality', count: 2 }
  const prompt = 'Astronaut in a jungle, cold color palette, muted colors, detailed, 8k'
  const a = await pipe.generate(prompt, opts)
  const b = await pipe.generate(prompt, { ...opts, promptStyle: 'plain' })
  t.deepEqual(a.latents, b.latents)
})

test('the whole pipeline on a weighted long prompt matches diffusers fed A1111\'s embeddings', async t => {
  const c = fixture.pipeline
  t.is(c.tokens, 154)
  const opts = { negativePrompt: c.negative, steps: c.steps, guidanceScale: c.guidance, width: c.width, height: c.height, seed: c.seed,
    promptStyle: 'a1111' as const }
  const lat = await pipe.generate(c.prompt, { ...opts, outputType: 'latent' })
  const err = relativeError(lat.latents!, f32(c.latents))
  t.true(err <= 1e-3, `latents: ${err}`)
  const img = (await pipe.generate(c.prompt, opts)).images[0]
  const ref = Buffer.from(c.image, 'base64')
  t.true(maxAbsDiff(img.data, ref) <= 1, `image: ${maxAbsDiff(img.data, ref)}`)
  // The PNG's parameters keep the prompt as written.
  t.true(img.parameters.startsWith(`${c.prompt}\nNegative prompt: ${c.negative}\n`))
})

test('the request memory estimate counts the context: each prompt chunk adds its keys and values', t => {
  const levels = [320, 640, 1280].map((channels, i) => ({ channels, layers: 2, cross: i > 0 }))
  const kvChannels = 2 * (640 * 5 * 2 + 1280 * 5 * 10) + 2 * 1280 * 10
  // A small VAE, so that the UNet's peak is the request's.
  const m = { bytesPer: 2, latentChannels: 4, levels, kvChannels, kvCopies: 2, vaeChannels: [8, 8, 8, 8], scale: 8 }
  const short = requestBytes(m, 1024, 1024, 1, true, 77)
  const long = requestBytes(m, 1024, 1024, 1, true, 8 * 77)
  t.is(long - short, 2 * 7 * 77 * m.kvChannels * m.kvCopies * m.bytesPer)
  t.notThrows(() => checkRequestMemory(m, { width: 1024, height: 1024, count: 1, guided: true }, 'cuda', short, 'the limit'))
  t.throws(() => checkRequestMemory(m, { width: 1024, height: 1024, count: 1, guided: true, tokens: 8 * 77 }, 'cuda', short, 'the limit'),
    { message: /with a 616-token prompt need about/ })
})

test('long one-word runs tokenize as Hugging Face\'s fast tokenizer merges them', t => {
  t.true(fixture.long_words.length >= 8)
  for (const w of fixture.long_words as Array<{ text: string, ids: number[] }>) {
    t.deepEqual(toks[0].tokenize(w.text), w.ids, w.text.slice(0, 40))
  }
})
