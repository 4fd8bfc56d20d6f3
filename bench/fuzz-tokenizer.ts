// npm run fuzz, tokenizer stage: randomized (not coverage-guided) inputs for FUZZ_SECONDS: mutated golden
// prompts, runs of vocabulary pieces and special tokens, whitespace, arbitrary code points and lone
// surrogates. Every input must give 77 in-vocabulary ids starting with <|startoftext|>, decode without
// throwing, and report truncation exactly when more than 75 tokens came out.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { CLIPTokenizer } from '../lib/tokenizer/clip-tokenizer'

const REF = path.resolve(process.env.PG25_REFERENCE ?? path.join(__dirname, '..', '..', '..', 'shared', 'reference'))
const seconds = Number(process.env.FUZZ_SECONDS ?? 180)

let state = 0x9e3779b9
const rnd = (n: number): number => { state ^= state << 13; state ^= state >>> 17; state ^= state << 5; return (state >>> 0) % n }

async function main (): Promise<void> {
  const toks = await Promise.all(['tokenizer', 'tokenizer_2'].map(async d => await CLIPTokenizer.fromPretrained(path.join(REF, 'tiny-pg25', d))))
  const vocab = Object.keys(JSON.parse(readFileSync(path.join(REF, 'tiny-pg25', 'tokenizer', 'vocab.json'), 'utf8')))
  const seeds: string[] = JSON.parse(readFileSync(path.join(REF, 'golden', 'cases.json'), 'utf8')).tokenizer.cases.map((c: { text: string }) => c.text)
  const pieces = [' ', '\t', '\n', '  ', '<|startoftext|>', '<|endoftext|>', '<|endof', "'s", "'", '!', '\u0000', '\ud800', '\udfff', '\u200b', '\ufeff', 'é', 'e\u0301', '🤖', '東京']
  const gen = (): string => {
    switch (rnd(4)) {
      case 0: { // mutate a golden prompt
        const s = [...seeds[rnd(seeds.length)]]
        for (let k = rnd(8); k >= 0; k--) {
          const insert = rnd(2) ? pieces[rnd(pieces.length)] : String.fromCodePoint(rnd(0x110000) & ~0x800)
          s.splice(rnd(s.length + 1), rnd(3), ...insert)
        }
        return s.join('')
      }
      case 1: return Array.from({ length: rnd(120) }, () => vocab[rnd(vocab.length)].replace('</w>', rnd(2) ? ' ' : '')).join('')
      case 2: return Array.from({ length: rnd(200) }, () => pieces[rnd(pieces.length)]).join('')
      default: return String.fromCharCode(...Array.from({ length: rnd(300) }, () => rnd(0x10000)))
    }
  }
  const end = Date.now() + seconds * 1000
  let runs = 0
  while (Date.now() < end) {
    for (let i = 0; i < 200; i++) {
      const text = gen()
      for (const tok of toks) {
        const { ids, truncated } = tok.encodeWithInfo(text)
        const n = tok.tokenize(text).length
        if (ids.length !== 77 || ids[0] !== tok.bosId || !ids.every(id => Number.isInteger(id) && id >= 0 && id < vocab.length) ||
          (truncated !== null) !== (n > 75)) {
          throw new Error(`tokenizer invariant broken for ${JSON.stringify(text)}`)
        }
        tok.decode(ids)
      }
      runs++
    }
  }
  console.log(`fuzz: tokenizer stat::number_of_executed_units: ${runs}`)
}

main().catch(err => { console.error(`fuzz: tokenizer FOUND A FAILURE: ${(err as Error).message}`); process.exitCode = 1 })
