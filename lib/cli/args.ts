// Command-line flags: each command's table of flags, parsed with node's parseArgs (non-strict, from its
// tokens) so that a misspelled flag gets a "did you mean" instead of parseArgs' own message, and a
// flag of another command says which command it belongs to.
import { parseArgs } from 'node:util'
import { Pg25Error } from '../errors'
import { closest } from '../options'

/** `multiple`: may be given several times (`--lora a --lora b`); its values, in order, are in `lists` */
export interface Flag { type: 'string' | 'boolean', short?: string, multiple?: boolean }
export type Flags = Record<string, Flag>
export type Values = Record<string, string | boolean | undefined>

const bad = (msg: string): never => { throw new Pg25Error('PG25_INVALID_ARGUMENT', msg) }

/**
 * Parses `argv` against `flags`. `elsewhere` maps flags of other commands to those commands (`pg25 serve`).
 * Refuses unknown flags, a string flag without a value (or whose value is another flag), a boolean
 * flag given a value, and a flag given twice.
 */
export function parseFlags (command: 'pg25' | `pg25 ${string}`, argv: string[], flags: Flags, elsewhere: Record<string, string> = {}): { values: Values, positionals: string[], lists: Record<string, string[]> } {
  const { tokens } = parseArgs({ args: argv, options: flags, allowPositionals: true, strict: false, tokens: true })
  const values: Values = {}
  const positionals: string[] = []
  const lists: Record<string, string[]> = {}
  for (const t of tokens) {
    if (t.kind === 'positional') { positionals.push(t.value); continue }
    if (t.kind !== 'option') continue
    const flag = flags[t.name]
    if (flag === undefined) {
      const help = `see ${command} --help`
      if (t.rawName.startsWith('--') && Object.hasOwn(elsewhere, t.name)) bad(`${t.rawName} is an option of ${elsewhere[t.name]}, not of ${command} (${help})`)
      const near = t.rawName.startsWith('--') ? closest(t.name, Object.keys(flags)) : undefined
      bad(`unknown option ${t.rawName}${near !== undefined ? `; did you mean --${near}?` : ''} (${help})`)
    }
    if (values[t.name] !== undefined && flag.multiple !== true) bad(`--${t.name} is given twice`)
    if (flag.type === 'boolean') {
      if (t.value !== undefined) bad(`--${t.name} takes no value, got ${JSON.stringify(t.value)}`)
      values[t.name] = true
    } else {
      if (t.value === undefined) bad(`--${t.name} needs a value`)
      // `--negative --steps 4` is a forgotten value, not a prompt; `--negative=--x` passes one that starts with "--".
      if (!t.inlineValue && t.value!.startsWith('--')) bad(`--${t.name} needs a value, got the flag ${t.value} (write --${t.name}=${t.value} to mean it)`)
      values[t.name] = t.value
      if (flag.multiple === true) (lists[t.name] ??= []).push(t.value!)
    }
  }
  return { values, positionals, lists }
}

/** A plain decimal integer: Number() would take '' as 0 and '0x10' as 16. */
export function int (name: string, v: string | boolean | undefined): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (typeof v !== 'string' || !/^[+-]?\d+$/.test(v) || !Number.isSafeInteger(n)) bad(`--${name} must be a decimal integer, got ${JSON.stringify(v)}`)
  return n
}

/** A plain decimal number (exponents allowed). */
export function num (name: string, v: string | boolean | undefined): number | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'string' || !/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(v)) bad(`--${name} must be a decimal number, got ${JSON.stringify(v)}`)
  return Number(v)
}

export const str = (v: string | boolean | undefined): string | undefined => typeof v === 'string' ? v : undefined
