import test from 'ava'
import path from 'node:path'
import { CLIPTokenizer, Pg25Error } from '../../lib'
import { TINY, goldenCases } from '../support/helpers'

const cases = goldenCases().tokenizer.cases as Array<{ text: string, ids: number[], ids_2: number[] }>

test('every golden case matches exactly, for both tokenizers', async t => {
  const tok1 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'))
  const tok2 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer_2'))
  t.true(cases.length >= 8)
  for (const c of cases) {
    t.deepEqual(tok1.encode(c.text), c.ids, `tokenizer: ${JSON.stringify(c.text)}`)
    t.deepEqual(tok2.encode(c.text), c.ids_2, `tokenizer_2: ${JSON.stringify(c.text)}`)
  }
})

test('pad tokens come from each tokenizer config: <|endoftext|> and "!"', async t => {
  const tok1 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'))
  const tok2 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer_2'))
  t.is(tok1.padId, 49407)
  t.is(tok2.padId, 0)
  t.is(tok1.encode('').length, 77)
})

test('a cut prompt reports the dropped words', async t => {
  const tok = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'))
  const long = cases[cases.length - 1].text
  const { ids, truncated } = tok.encodeWithInfo(long)
  t.is(ids.length, 77)
  t.is(ids[76], tok.eosId)
  t.truthy(truncated)
  // 8 words repeated 8 times is 88 tokens: the last 13 are cut, and they end the prompt.
  t.true(long.endsWith(truncated!), truncated!)
  t.is(truncated, 'sunset with dramatic clouds a majestic castle on a hill at sunset with dramatic clouds'.split(' ').slice(-13).join(' '))
  t.is(tok.encodeWithInfo('a photo of a cat').truncated, null)
})

test('decode inverts encode on plain text', async t => {
  const tok = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'))
  t.is(tok.decode(tok.encode('Café crème, 東京 🤖!')), 'café crème , 東京 🤖!') // the split pattern keeps a symbol run together
})

test('a missing tokenizer folder or malformed vocab is a Pg25Error naming the file', async t => {
  const e = await t.throwsAsync(CLIPTokenizer.fromPretrained(path.join(TINY, 'nope')))
  t.true(e instanceof Pg25Error)
  t.is((e as Pg25Error).code, 'PG25_NOT_FOUND')
  t.regex(e.message, /nope[/\\]vocab\.json/)
})

test('non-string input is refused', async t => {
  const tok = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'))
  const e = t.throws(() => tok.encode(42 as unknown as string))
  t.is((e as Pg25Error).code, 'PG25_INVALID_ARGUMENT')
})
