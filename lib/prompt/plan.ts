// A call's prompts as the text encoders will take them, settled before the call is queued: the
// context length is part of the request's memory estimate, and a prompt too long is refused at once.
import type { CLIPTokenizer } from '../tokenizer/clip-tokenizer'
import { checkPromptLength, type PromptStyle } from './chunk'
import { planStyled, type StyledPlan } from './conditioning'
import type { PlainPlan } from './plain'

export type { PlainPlan }

export type PromptPlan = (PlainPlan | StyledPlan) & { warnings: string[] }

export interface PromptTexts { prompt: string, prompt2?: string, negativePrompt?: string, negativePrompt2?: string }

/** The cut part of a prompt as a warning quotes it: whole when short, else its two ends (a long prompt must not flood the log). */
function quoteCut (text: string): string {
  const ends = 100
  const chars = Array.from(text) // code points: an end never splits a surrogate pair
  if (chars.length <= 3 * ends) return JSON.stringify(text)
  return `${JSON.stringify(chars.slice(0, ends).join(''))} … ${JSON.stringify(chars.slice(-ends).join(''))} (${chars.length} characters)`
}

/**
 * The prompts of one call. `negative`: whether the negative half is encoded (guidance, with a negative
 * prompt or a model that does not zero it). Warnings come once per call, whatever the encoders cut.
 */
export function planPrompts (toks: [CLIPTokenizer, CLIPTokenizer], style: PromptStyle, t: PromptTexts, negative: boolean): PromptPlan {
  const texts: Array<[string, string, string]> = [['prompt', t.prompt, t.prompt2 ?? t.prompt]]
  const neg = t.negativePrompt ?? ''
  if (negative) texts.unshift(['negativePrompt', neg, t.negativePrompt2 ?? neg])
  if (style !== 'plain') {
    const negs = negative ? { neg, neg2: t.negativePrompt2 ?? neg } : {}
    const plan = planStyled(toks, style, { prompt: t.prompt, prompt2: t.prompt2 ?? t.prompt, ...negs })
    return { ...plan, warnings: [] }
  }
  const cuts: string[] = []
  const ids: [number[][], number[][]] = [[], []]
  for (const [what, text1, text2] of texts) {
    checkPromptLength(text1, what)
    checkPromptLength(text2, what === 'prompt' ? 'prompt2' : 'negativePrompt2')
    const a = toks[0].encodeWithInfo(text1)
    const b = toks[1].encodeWithInfo(text2)
    ids[0].push(a.ids)
    ids[1].push(b.ids)
    if (a.truncated !== null) cuts.push(`${what}: ${quoteCut(a.truncated)}`)
    // The second encoder's cut is named only where it differs from the first one's.
    const second = what === 'prompt' ? 'prompt2' : 'negativePrompt2'
    if (b.truncated !== null && (text2 !== text1 || b.truncated !== a.truncated)) cuts.push(`${second}: ${quoteCut(b.truncated)}`)
  }
  const warnings = cuts.length === 0 ?
      [] :
      [`The following part of your input was truncated because CLIP can only handle sequences up to 77 tokens: ${cuts.join('; ')} ` +
        '(promptStyle \'a1111\' or \'comfy\' reads longer prompts)']
  return { style: 'plain', ids, tokens: 77, warnings }
}
