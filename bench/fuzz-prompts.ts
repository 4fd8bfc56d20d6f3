// npm run fuzz, prompt stage: randomized (not coverage-guided) prompts for FUZZ_SECONDS, built from
// weighting syntax ( ) [ ] : \ BREAK, numbers, words, long one-word runs and arbitrary code points, up
// to past the length bound. In each style every prompt must be read (chunks of 77 in-vocabulary ids,
// finite weights, at most MAX_PROMPT_CHUNKS) or refused with PG25_INVALID_ARGUMENT, and no prompt may
// take the main thread longer than a bound (the work on a prompt is bounded before and during tokenizing).
import path from 'node:path'
import { Pg25Error } from '../lib/errors'
import { MAX_PROMPT_CHARS, MAX_PROMPT_CHUNKS } from '../lib/prompt/chunk'
import { planPrompts } from '../lib/prompt/plan'
import { CLIPTokenizer } from '../lib/tokenizer/clip-tokenizer'

const REF = path.resolve(process.env.PG25_REFERENCE ?? path.join(__dirname, '..', '..', '..', 'shared', 'reference'))
const seconds = Number(process.env.FUZZ_SECONDS ?? 180)
// A liveness bound, far above the few milliseconds the largest prompt takes.
const SLOW_MS = 500

let state = 0x2545f491
const rnd = (n: number): number => { state ^= state << 13; state ^= state >>> 17; state ^= state << 5; return (state >>> 0) % n }

const PIECES = ['(', ')', '[', ']', ':', '\\', '\\(', '\\)', '\\[', '\\]', 'BREAK', ' BREAK ', ':1.5)', ':0)', ':-2)', ':1e3)', ':nan)',
  ':1.2.3)', ',', ', ', ' ', '\n', 'cat', 'a red', 'castle', '🤖', '東京', 'é', '<|endoftext|>', '1_0', '(((', ')))']

function gen (): string {
  switch (rnd(4)) {
    case 0: return Array.from({ length: rnd(400) }, () => PIECES[rnd(PIECES.length)]).join('')
    case 1: return PIECES[rnd(PIECES.length)].repeat(rnd(MAX_PROMPT_CHARS / 2 + 200))
    case 2: return String.fromCodePoint(...Array.from({ length: rnd(600) }, () => rnd(2) ? rnd(0x80) : rnd(0x110000) & ~0x800))
    default: return Array.from({ length: rnd(3000) }, () => 'abcdefghijklmnopqrstuvwxyz ([:])'[rnd(32)]).join('')
  }
}

async function main (): Promise<void> {
  const load = async (d: string): Promise<CLIPTokenizer> => await CLIPTokenizer.fromPretrained(path.join(REF, 'tiny-pg25', d))
  const toks: [CLIPTokenizer, CLIPTokenizer] = [await load('tokenizer'), await load('tokenizer_2')]
  const end = Date.now() + seconds * 1000
  let runs = 0
  let refused = 0
  let slowest = 0
  while (Date.now() < end) {
    for (let i = 0; i < 20; i++) {
      const prompt = gen()
      const negativePrompt = rnd(2) ? gen() : undefined
      for (const style of ['a1111', 'comfy', 'plain'] as const) {
        const t0 = performance.now()
        try {
          const plan = planPrompts(toks, style, { prompt, negativePrompt }, true)
          const styled = plan.style === 'plain' ? [] : [plan.pos, plan.neg].flatMap(p => p === undefined ? [] : [...p.l, ...p.g])
          const rows = plan.style === 'plain' ? plan.ids.flat() : styled.map(c => c.ids)
          const weights = styled.flatMap(c => c.weights)
          const chunks = plan.tokens / 77
          const inVocab = rows.every(r => r.length === 77 && r.every(id => Number.isInteger(id) && id >= 0 && id < 49408))
          const bounded = Number.isInteger(chunks) && (style !== 'a1111' || chunks <= MAX_PROMPT_CHUNKS)
          if (!inVocab || !weights.every(Number.isFinite) || !bounded) {
            throw new Error(`prompt invariant broken (${style}) for ${JSON.stringify(prompt.slice(0, 200))}`)
          }
        } catch (err) {
          if (!(err instanceof Pg25Error && err.code === 'PG25_INVALID_ARGUMENT')) throw err
          refused++
        }
        const ms = performance.now() - t0
        slowest = Math.max(slowest, ms)
        if (ms > SLOW_MS) throw new Error(`${style}: a prompt took ${ms.toFixed(0)} ms: ${JSON.stringify(prompt.slice(0, 200))}`)
      }
      runs++
    }
  }
  console.log(`fuzz: prompts stat::number_of_executed_units: ${runs} (refused ${refused}, slowest ${slowest.toFixed(1)} ms)`)
}

main().catch(err => { console.error(`fuzz: prompts FOUND A FAILURE: ${(err as Error).message}`); process.exitCode = 1 })
