// Prompts as token chunks of 77 (start token, 75 tokens, end token and padding) with a weight per
// token, chunked the way each reference chunks them: A1111's tokenize_line (modules/sd_hijack_clip.py)
// and ComfyUI's SDTokenizer.tokenize_with_weights (comfy/sd1_clip.py).
import { Pg25Error } from '../errors'
import type { CLIPTokenizer } from '../tokenizer/clip-tokenizer'
import { parseA1111, parseComfy } from './parse'

export type PromptStyle = 'a1111' | 'comfy' | 'plain'
export const PROMPT_STYLES: readonly PromptStyle[] = ['a1111', 'comfy', 'plain']

/** The most characters a prompt may have (checked before tokenizing), and the most chunks of 75 tokens. */
export const MAX_PROMPT_CHARS = 8192
export const MAX_PROMPT_CHUNKS = 8

export interface Chunk { ids: number[], weights: number[] }

const CHUNK = 75
// A1111's comma_padding_backtrack default: text after a comma this close to a chunk's end moves on.
const COMMA_BACKTRACK = 20
// ComfyUI's max_word_length: a word of this many tokens or more may be split between chunks.
const COMFY_LONG_WORD = 8

/** One chunk around `tokens`: start, tokens, end, then `pad` (after the first end token) to 77. */
function wrap (tok: CLIPTokenizer, tokens: number[], weights: number[], pad: number): Chunk {
  const ids = [tok.bosId, ...tokens, tok.eosId]
  const w = [1, ...weights, 1]
  while (ids.length < CHUNK + 2) {
    ids.push(pad)
    w.push(1)
  }
  return { ids, weights: w }
}

/** The chunk of an empty prompt: [start, end, pad…]. */
export function emptyChunk (tok: CLIPTokenizer, pad: number): Chunk {
  return wrap(tok, [], [], pad)
}

/** A1111: each parsed run tokenized alone, 75 to a chunk, BREAK ends one, text after a near comma moves on. */
function chunkA1111 (tok: CLIPTokenizer, text: string, pad: number): Chunk[] {
  const comma = tok.tokenId(',</w>')
  const chunks: Chunk[] = []
  let tokens: number[] = []
  let weights: number[] = []
  let lastComma = -1
  const next = (): void => {
    // A1111 pads with end tokens; the second encoder's pad (0) replaces all after the first end token.
    chunks.push(wrap(tok, tokens, weights, pad))
    tokens = []
    weights = []
    lastComma = -1
  }
  for (const seg of parseA1111(text)) {
    if (seg.brk === true) {
      next()
      continue
    }
    for (const t of tok.tokenize(seg.text)) {
      if (t === comma) lastComma = tokens.length
      else if (tokens.length === CHUNK && lastComma !== -1 && tokens.length - lastComma <= COMMA_BACKTRACK) {
        const at = lastComma + 1
        const moved = tokens.slice(at)
        const movedWeights = weights.slice(at)
        tokens = tokens.slice(0, at)
        weights = weights.slice(0, at)
        next()
        tokens = moved
        weights = movedWeights
      }
      if (tokens.length === CHUNK) next()
      tokens.push(t)
      weights.push(seg.weight)
    }
  }
  if (tokens.length > 0 || chunks.length === 0) next()
  return chunks
}

/** ComfyUI: words split on spaces, each looked up whole or tokenized; a short word never straddles chunks. */
function chunkComfy (tok: CLIPTokenizer, text: string, pad: number): Chunk[] {
  const groups: Array<{ ids: number[], weight: number }> = []
  for (const seg of parseComfy(text)) {
    for (const word of seg.text.replaceAll('\n', ' ').split(' ')) {
      if (word === '') continue
      const whole = tok.tokenId(`${word}</w>`)
      groups.push({ ids: whole === undefined ? tok.tokenize(word) : [whole], weight: seg.weight })
    }
  }
  const chunks: Chunk[] = []
  let tokens: number[] = []
  let weights: number[] = []
  const room = CHUNK + 1
  for (const g of groups) {
    const large = g.ids.length >= COMFY_LONG_WORD
    let rest = g.ids
    while (rest.length > 0) {
      if (rest.length + tokens.length + 1 > room) {
        if (large) {
          const take = room - 1 - tokens.length
          tokens.push(...rest.slice(0, take))
          weights.push(...Array<number>(take).fill(g.weight))
          rest = rest.slice(take)
        }
        chunks.push(wrap(tok, tokens, weights, pad))
        tokens = []
        weights = []
      } else {
        tokens.push(...rest)
        weights.push(...Array<number>(rest.length).fill(g.weight))
        rest = []
      }
    }
  }
  chunks.push(wrap(tok, tokens, weights, pad))
  return chunks
}

/** Refuses, before any tokenizing, a prompt too long to bound the work on it. */
export function checkPromptLength (text: string, what: string): void {
  if (text.length > MAX_PROMPT_CHARS) {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `${what} has ${text.length} characters; at most ${MAX_PROMPT_CHARS} are read`)
  }
}

/**
 * The chunks of one prompt for one tokenizer in a weighting style. `pad` fills each chunk after its end
 * token (the end token for CLIP-L, 0 for CLIP-G, as both references pad). More than MAX_PROMPT_CHUNKS
 * is refused.
 */
export function promptChunks (tok: CLIPTokenizer, text: string, style: 'a1111' | 'comfy', pad: number, what: string): Chunk[] {
  checkPromptLength(text, what)
  const chunks = style === 'a1111' ? chunkA1111(tok, text, pad) : chunkComfy(tok, text, pad)
  if (chunks.length > MAX_PROMPT_CHUNKS) {
    const most = `at most ${MAX_PROMPT_CHUNKS} (${MAX_PROMPT_CHUNKS * CHUNK} tokens) are allowed`
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `${what} takes ${chunks.length} chunks of ${CHUNK} tokens; ${most}`)
  }
  return chunks
}
