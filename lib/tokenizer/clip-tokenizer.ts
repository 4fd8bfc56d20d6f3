import path from 'node:path'
import { Pg25Error } from '../errors'
import { readJsonObject, readText, parseJson } from '../model/files'

/** What `encodeWithInfo` returns: the ids, and the part of the prompt cut to fit the 77 tokens. */
export interface Encoding {
  ids: number[]
  /** The dropped text, decoded from the dropped tokens, or null when nothing was cut. */
  truncated: string | null
}

// GPT-2/CLIP byte-to-unicode table: every byte maps to a printable code point.
export function bytesToUnicode (): string[] {
  const bs: number[] = []
  for (let b = 33; b <= 126; b++) bs.push(b)
  for (let b = 161; b <= 172; b++) bs.push(b)
  for (let b = 174; b <= 255; b++) bs.push(b)
  const cs = [...bs]
  let n = 0
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b)
      cs.push(256 + n)
      n++
    }
  }
  const table: string[] = new Array(256)
  bs.forEach((b, i) => { table[b] = String.fromCodePoint(cs[i]) })
  return table
}

const BYTE_TO_CHAR = bytesToUnicode()
const CHAR_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]))
const WORD_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu
const END_OF_WORD = '</w>'
const encoder = new TextEncoder()

function tokenString (cfg: Record<string, unknown>, key: string, file: string): string | undefined {
  const v = cfg[key]
  if (v === undefined || v === null) return undefined
  if (typeof v === 'string') return v
  if (typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content
  throw new Pg25Error('PG25_BAD_CONFIG', `${file}: "${key}" must be a string or {content}`)
}

/**
 * CLIP byte-level BPE with Hugging Face CLIPTokenizerFast semantics (NFC, whitespace runs to one
 * space, lowercase, the CLIP split pattern, `<|startoftext|>` + 75 tokens + `<|endoftext|>`, padded
 * to 77 with the tokenizer's own pad token).
 *
 * ```ts
 * const tok = await CLIPTokenizer.fromPretrained('playground-v2.5/tokenizer_2')
 * tok.encode('a cat in a spacesuit') // [49406, 320, 2368, 530, 320, 7887, 2302, 49407, 0, 0, ...] (77 ids)
 * ```
 */
export class CLIPTokenizer {
  readonly maxLength: number
  readonly bosId: number
  readonly eosId: number
  readonly padId: number
  private readonly unkId: number
  private readonly vocab: Map<string, number>
  private readonly idToToken: string[]
  /** merge ranks by pair of symbol ids, and the id each merge makes */
  private readonly pairs: PairTable
  private readonly pairMerged: Int32Array
  /** each byte's symbol id, alone and ending a word */
  private readonly byteIds: Int32Array
  private readonly cache = new Map<string, number[]>()
  private readonly special: Map<string, number>
  private readonly specialPattern: RegExp

  private constructor (
    vocab: Map<string, number>, merges: string[],
    opts: { bos: string, eos: string, pad: string, unk: string, maxLength: number, source: string }
  ) {
    this.vocab = vocab
    this.idToToken = []
    for (const [tok, id] of vocab) this.idToToken[id] = tok
    const id = (tok: string, what: string): number => {
      const v = vocab.get(tok)
      if (v === undefined) throw new Pg25Error('PG25_BAD_CONFIG', `${opts.source}: ${what} token ${JSON.stringify(tok)} is not in vocab.json`)
      return v
    }
    this.bosId = id(opts.bos, 'bos')
    this.eosId = id(opts.eos, 'eos')
    this.padId = id(opts.pad, 'pad')
    this.unkId = id(opts.unk, 'unk')
    this.pairMerged = new Int32Array(merges.length)
    this.pairs = new PairTable(merges.length)
    // Every single byte is in the CLIP vocabulary; a symbol can only be missing from a broken vocab.
    this.byteIds = Int32Array.from({ length: 512 }, (_, i) => vocab.get(BYTE_TO_CHAR[i & 255] + (i >= 256 ? END_OF_WORD : '')) ??
      this.unkId)
    merges.forEach((m, rank) => {
      const [a, b] = m.split(' ')
      const ia = vocab.get(a)
      const ib = vocab.get(b)
      // A merge whose parts or result are not in the vocabulary could only make unknown symbols.
      if (ia === undefined || ib === undefined) return
      this.pairs.set(ia, ib, rank)
      this.pairMerged[rank] = vocab.get(a + b) ?? this.unkId
    })
    this.maxLength = opts.maxLength
    // Special tokens are split out of the text before normalisation, as the fast tokenizer does.
    this.special = new Map([[opts.bos, this.bosId], [opts.eos, this.eosId], [opts.unk, this.unkId]])
    const escaped = [...this.special.keys()].sort((a, b) => b.length - a.length).map(s => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    this.specialPattern = new RegExp(`(${escaped.join('|')})`)
  }

  /** Loads `vocab.json`, `merges.txt` and `tokenizer_config.json` from a tokenizer folder. */
  static async fromPretrained (dir: string): Promise<CLIPTokenizer> {
    const vocabFile = path.join(dir, 'vocab.json')
    const mergesFile = path.join(dir, 'merges.txt')
    const configFile = path.join(dir, 'tokenizer_config.json')
    const vocabJson = parseJson(await readText(vocabFile, 'the tokenizer vocabulary'), vocabFile)
    if (vocabJson === null || typeof vocabJson !== 'object' || Array.isArray(vocabJson)) {
      throw new Pg25Error('PG25_BAD_CONFIG', `${vocabFile}: must map tokens to ids`)
    }
    const vocab = new Map<string, number>()
    for (const [tok, id] of Object.entries(vocabJson as Record<string, unknown>)) {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 10_000_000) {
        throw new Pg25Error('PG25_BAD_CONFIG', `${vocabFile}: token ${JSON.stringify(tok)} has an invalid id`)
      }
      vocab.set(tok, id)
    }
    const mergesText = await readText(mergesFile, 'the BPE merges')
    const merges: string[] = []
    for (const line of mergesText.split('\n')) {
      if (line.startsWith('#version') || line.trim() === '') continue
      const parts = line.split(' ')
      if (parts.length !== 2) throw new Pg25Error('PG25_BAD_CONFIG', `${mergesFile}: bad merge line ${JSON.stringify(line.slice(0, 40))}`)
      merges.push(line)
    }
    const config = await readJsonObject(configFile, 'the tokenizer config')
    let special: Record<string, unknown> = {}
    try {
      special = await readJsonObject(path.join(dir, 'special_tokens_map.json'), 'the special tokens map')
    } catch (err) {
      if (!(err instanceof Pg25Error && err.code === 'PG25_NOT_FOUND')) throw err
    }
    const pick = (key: string, fallback: string): string =>
      tokenString(config, key, configFile) ?? tokenString(special, key, configFile) ?? fallback
    const maxLen = config.model_max_length
    const maxLength = typeof maxLen === 'number' && Number.isInteger(maxLen) && maxLen >= 2 && maxLen <= 77 ? maxLen : 77
    return new CLIPTokenizer(vocab, merges, {
      bos: pick('bos_token', '<|startoftext|>'),
      eos: pick('eos_token', '<|endoftext|>'),
      pad: pick('pad_token', '<|endoftext|>'),
      unk: pick('unk_token', '<|endoftext|>'),
      maxLength,
      source: configFile
    })
  }

  /** The `maxLength` (77) ids for `text`: start token, up to 75 tokens, end token, padding. */
  encode (text: string): number[] {
    return this.encodeWithInfo(text).ids
  }

  /** Like `encode`, and also reports what was cut when the prompt is longer than 75 tokens. */
  encodeWithInfo (text: string): Encoding {
    const tokens = this.tokenize(text)
    const room = this.maxLength - 2
    const kept = tokens.slice(0, room)
    const ids = [this.bosId, ...kept, this.eosId]
    while (ids.length < this.maxLength) ids.push(this.padId)
    return { ids, truncated: tokens.length > room ? this.decode(tokens.slice(room)) : null }
  }

  /** All BPE token ids of `text`, without start/end tokens or truncation. */
  tokenize (text: string): number[] {
    if (typeof text !== 'string') throw new Pg25Error('PG25_INVALID_ARGUMENT', 'prompt must be a string')
    const out: number[] = []
    for (const piece of text.split(this.specialPattern)) {
      if (piece === '') continue
      const sid = this.special.get(piece)
      if (sid !== undefined) {
        out.push(sid)
        continue
      }
      const normalized = piece.normalize('NFC').replace(/\s+/gu, ' ').toLowerCase()
      for (const m of normalized.matchAll(WORD_PATTERN)) out.push(...this.bpe(m[0]))
    }
    return out
  }

  /** Text for ids, as Hugging Face decodes CLIP tokens (end-of-word markers become spaces). */
  decode (ids: number[]): string {
    const chars = ids.filter(id => id !== this.bosId && id !== this.eosId && id !== this.padId).map(id => this.idToToken[id] ?? '').join('')
    const bytes: number[] = []
    for (const ch of chars.replaceAll(END_OF_WORD, ' ')) {
      const b = CHAR_TO_BYTE.get(ch)
      if (b !== undefined) bytes.push(b)
      else bytes.push(...encoder.encode(ch))
    }
    return new TextDecoder().decode(new Uint8Array(bytes)).trim()
  }

  /** The id of one vocabulary entry (such as `',</w>'`), or undefined. */
  tokenId (token: string): number | undefined {
    return this.vocab.get(token)
  }

  private bpe (word: string): number[] {
    const cached = this.cache.get(word)
    if (cached) return cached
    const ids = this.merge(encoder.encode(word))
    // Long words are not kept: the cache is for the short words prompts repeat.
    if (word.length <= 64) {
      if (this.cache.size > 50_000) this.cache.clear()
      this.cache.set(word, ids)
    }
    return ids
  }

  /**
   * The merges of one word in the order Hugging Face's tokenizers applies them: the lowest-ranked pair
   * first, the leftmost of equal ranks, from a heap over a linked list of symbol ids. O(n log n) in the
   * word's length, so that a one-word prompt of many kilobytes tokenizes in milliseconds.
   */
  private merge (bytes: Uint8Array): number[] {
    const n = bytes.length
    if (n === 0) return []
    const sym = Int32Array.from(bytes, (b, i) => this.byteIds[i === n - 1 ? 256 + b : b])
    const next = Int32Array.from({ length: n }, (_, i) => i + 1 < n ? i + 1 : -1)
    const prev = Int32Array.from({ length: n }, (_, i) => i - 1)
    // Entries rank x 2^26 + position: one number orders by rank, then leftmost.
    const heap = new MinHeap()
    const push = (i: number): void => {
      const j = next[i]
      if (j < 0) return
      const r = this.pairs.get(sym[i], sym[j])
      if (r >= 0) heap.push(r * POSITIONS + i)
    }
    for (let i = 0; i < n - 1; i++) push(i)
    while (heap.size > 0) {
      const top = heap.pop()
      const rank = Math.floor(top / POSITIONS)
      const i = top - rank * POSITIONS
      const j = next[i]
      // A stale entry: one of its symbols has merged with another since (a rank names one pair).
      if (sym[i] < 0 || j < 0 || this.pairs.get(sym[i], sym[j]) !== rank) continue
      sym[i] = this.pairMerged[rank]
      sym[j] = -1
      next[i] = next[j]
      if (next[j] >= 0) prev[next[j]] = i
      if (prev[i] >= 0) push(prev[i])
      push(i)
    }
    const out: number[] = []
    for (let i = 0; i >= 0; i = next[i]) out.push(sym[i])
    return out
  }
}

/** Open addressing from a pair of ids to a rank (Map keys past 2^31 hash slowly). */
class PairTable {
  private readonly mask: number
  private readonly a: Int32Array
  private readonly b: Int32Array
  private readonly rank: Int32Array

  constructor (entries: number) {
    let size = 16
    while (size < 2 * entries) size *= 2
    this.mask = size - 1
    this.a = new Int32Array(size).fill(-1)
    this.b = new Int32Array(size)
    this.rank = new Int32Array(size)
  }

  private slot (a: number, b: number): number {
    let i = (Math.imul(a, 0x9e3779b1) ^ Math.imul(b, 0x85ebca6b)) & this.mask
    while (this.a[i] !== -1 && (this.a[i] !== a || this.b[i] !== b)) i = (i + 1) & this.mask
    return i
  }

  /** A later rank for the same pair replaces the earlier one, as merges.txt lines read in order do. */
  set (a: number, b: number, rank: number): void {
    const i = this.slot(a, b)
    this.a[i] = a
    this.b[i] = b
    this.rank[i] = rank
  }

  /** The pair's rank, or -1. */
  get (a: number, b: number): number {
    const i = this.slot(a, b)
    return this.a[i] === -1 ? -1 : this.rank[i]
  }
}

// Symbol positions per word in heap entries: words of up to 64 MiB, far past any prompt's bound.
const POSITIONS = 2 ** 26

/** A binary min-heap of numbers. */
class MinHeap {
  private readonly a: number[] = []

  get size (): number {
    return this.a.length
  }

  push (v: number): void {
    const a = this.a
    let i = a.length
    a.push(v)
    while (i > 0) {
      const p = (i - 1) >> 1
      if (a[p] <= v) break
      a[i] = a[p]
      i = p
    }
    a[i] = v
  }

  /** The least entry, taken out; only while size > 0. */
  pop (): number {
    const a = this.a
    const top = a[0]
    const last = a.pop()!
    const n = a.length
    if (n === 0) return top
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const c = l + 1 < n && a[l + 1] < a[l] ? l + 1 : l
      if (a[c] >= last) break
      a[i] = a[c]
      i = c
    }
    a[i] = last
    return top
  }
}
