// Prompt weighting syntax, read the way the two front ends SDXL users come from read it:
// AUTOMATIC1111's parse_prompt_attention (modules/prompt_parser.py) and ComfyUI's token_weights
// (comfy/sd1_clip.py). Both are lenient: unbalanced brackets are never an error.

/** A run of prompt text and its weight; `brk` marks an A1111 `BREAK` (a new chunk). */
export interface Segment { text: string, weight: number, brk?: true }

// Python's str.isspace() and \w for str patterns, which JS's \s and \b do not quite match.
const PY_SPACE = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000'
const PY_WORD = '\\p{L}\\p{N}_'
const BREAK = new RegExp(`[${PY_SPACE}]*(?<![${PY_WORD}])BREAK(?![${PY_WORD}])[${PY_SPACE}]*`, 'gu')
// A1111's re_attention, alternative for alternative (the order decides).
const ATTENTION = /\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|\]|[^\\()[\]:]+|:/gu
const ROUND = 1.1
const SQUARE = 1 / 1.1

/** Python's float() on `[.\d]+`: digits with at most one point, at least one digit. */
function a1111Number (s: string): number | undefined {
  return /^[+-]?(\d+\.?\d*|\.\d+)$/.test(s) ? Number(s) : undefined
}

/**
 * A1111's reading: `(x)` x1.1, `[x]` /1.1, `(x:w)` xw, nesting multiplies, `\(` `\)` `\[` `\]` `\\`
 * literal, `BREAK` a new chunk; an unclosed bracket weighs the rest of the prompt; runs of equal weight
 * merge. A weight Python could not read (`(x:1.2.3)`, which makes A1111 fail) stays literal text.
 */
export function parseA1111 (text: string): Segment[] {
  const res: Segment[] = []
  const round: number[] = []
  const square: number[] = []
  const multiply = (from: number, by: number): void => {
    for (let p = from; p < res.length; p++) res[p].weight *= by
  }
  for (const m of text.matchAll(ATTENTION)) {
    const tok = m[0]
    const w = m[1] === undefined ? undefined : a1111Number(m[1])
    if (tok.startsWith('\\')) res.push({ text: tok.slice(1), weight: 1 })
    else if (tok === '(') round.push(res.length)
    else if (tok === '[') square.push(res.length)
    else if (w !== undefined && round.length > 0) multiply(round.pop()!, w)
    else if (tok === ')' && round.length > 0) multiply(round.pop()!, ROUND)
    else if (tok === ']' && square.length > 0) multiply(square.pop()!, SQUARE)
    else {
      tok.split(BREAK).forEach((part, i) => {
        if (i > 0) res.push({ text: 'BREAK', weight: -1, brk: true })
        res.push({ text: part, weight: 1 })
      })
    }
  }
  for (const p of round) multiply(p, ROUND)
  for (const p of square) multiply(p, SQUARE)
  if (res.length === 0) res.push({ text: '', weight: 1 })
  // Merging runs of equal weight can join two BREAKs into the text "BREAKBREAK", as in A1111.
  const out: Segment[] = [res[0]]
  for (const s of res.slice(1)) {
    const last = out[out.length - 1]
    if (last.weight === s.weight) out[out.length - 1] = { text: last.text + s.text, weight: last.weight }
    else out.push(s)
  }
  return out.map(s => s.weight === -1 && s.text === 'BREAK' ? { ...s, brk: true } : { text: s.text, weight: s.weight })
}

/** ComfyUI's parse_parentheses: top-level `(…)` groups and the text between them (each a slice of `s`). */
function parentheses (s: string): string[] {
  const result: string[] = []
  let start = 0
  let level = 0
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]
    if (ch === '(') {
      if (level === 0) {
        if (i > start) result.push(s.slice(start, i))
        start = i
      }
      level++
    } else if (ch === ')') {
      level--
      if (level === 0) {
        result.push(s.slice(start, i + 1))
        start = i + 1
      }
    }
  }
  if (start < s.length) result.push(s.slice(start))
  return result
}

const PY_DIGITS = '\\d(_?\\d)*'
const PY_NUMBER = `[+-]?(${PY_DIGITS}(\\.(${PY_DIGITS})?)?|\\.${PY_DIGITS})([eE][+-]?${PY_DIGITS})?`
const PY_FLOAT = new RegExp(`^[${PY_SPACE}]*(${PY_NUMBER})[${PY_SPACE}]*$`, 'u')

/** Python's float() on a weight; inf and nan (which Python reads) are refused, so the text stays. */
function comfyNumber (s: string): number | undefined {
  const m = PY_FLOAT.exec(s)
  if (m === null) return undefined
  const v = Number(m[1].replaceAll('_', ''))
  return Number.isFinite(v) ? v : undefined
}

// Groups nested deeper are read as text: each level rescans its group (quadratic work), and ComfyUI
// itself fails with Python's RecursionError long before (about 1000 levels).
const COMFY_MAX_NESTING = 100

function tokenWeights (s: string, current: number, depth: number): Segment[] {
  const out: Segment[] = []
  for (let x of parentheses(s)) {
    let weight = current
    if (x.length >= 2 && x.startsWith('(') && x.endsWith(')') && depth < COMFY_MAX_NESTING) {
      x = x.slice(1, -1)
      const colon = x.lastIndexOf(':')
      weight *= 1.1
      if (colon > 0) {
        const w = comfyNumber(x.slice(colon + 1))
        if (w !== undefined) {
          weight = w
          x = x.slice(0, colon)
        }
      }
      out.push(...tokenWeights(x, weight, depth + 1))
    } else out.push({ text: x, weight: current })
  }
  return out
}

/**
 * ComfyUI's reading: `(x)` x1.1, `(x:w)` sets the weight to w (nested groups multiply by 1.1 only),
 * `\(` `\)` literal; no `[x]`, no BREAK. The segments' text is unescaped.
 */
export function parseComfy (text: string): Segment[] {
  const escaped = text.replaceAll('\\)', '\0\x01').replaceAll('\\(', '\0\x02')
  return tokenWeights(escaped, 1, 0).map(s => ({ text: s.text.replaceAll('\0\x01', ')').replaceAll('\0\x02', '('), weight: s.weight }))
}
