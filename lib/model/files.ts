// Reading a model directory's JSON files, with errors that name the file at fault.
import { promises as fs } from 'node:fs'
import { Pg25Error } from '../errors'
import { readRegularFile } from '../io/regular-file'

export async function readText (file: string, what: string): Promise<string> {
  return (await readRegularFile(file, { what, code: 'PG25_NOT_FOUND' })).toString('utf8')
}

export function parseJson (text: string, file: string): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new Pg25Error('PG25_BAD_CONFIG', `${file}: malformed JSON (${(err as Error).message})`)
  }
}

export async function readJsonObject (file: string, what: string): Promise<Record<string, unknown>> {
  const value = parseJson(await readText(file, what), file)
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Pg25Error('PG25_BAD_CONFIG', `${file}: ${what} must be a JSON object`)
  }
  return value as Record<string, unknown>
}

export async function exists (file: string): Promise<boolean> {
  try {
    await fs.stat(file)
    return true
  } catch {
    return false
  }
}
