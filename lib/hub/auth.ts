// The Hub token, looked up as huggingface_hub looks it up, so `huggingface-cli login` works for us too.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { Pg25Error } from '../errors'
import { hfHome } from './cache'

/** How a user passes a token, for the messages of refused requests. */
export const TOKEN_ADVICE = 'pass a token with access to it: the `token` option (pg25 download --token), the HF_TOKEN environment variable, or `huggingface-cli login`'

function clean (t: string | undefined): string | undefined {
  const s = t?.replace(/[\r\n]/g, '').trim()
  return s === '' ? undefined : s
}

/**
 * The token to send: `given`, else $HF_TOKEN (or the legacy $HUGGING_FACE_HUB_TOKEN), else the file
 * `huggingface-cli login` writes ($HF_TOKEN_PATH, else $HF_HOME/token). Undefined when there is none.
 */
export function resolveToken (given: string | undefined, e: NodeJS.ProcessEnv = process.env): string | undefined {
  if (given !== undefined) {
    if (typeof given !== 'string' || clean(given) === undefined) throw new Pg25Error('PG25_INVALID_ARGUMENT', 'token must be a non-empty string (a Hugging Face access token)')
    return clean(given)
  }
  const fromEnv = clean(e.HF_TOKEN) ?? clean(e.HUGGING_FACE_HUB_TOKEN)
  if (fromEnv !== undefined) return fromEnv
  const file = clean(e.HF_TOKEN_PATH) ?? path.join(hfHome(e), 'token')
  try {
    return clean(readFileSync(file, 'utf8'))
  } catch {
    return undefined
  }
}
