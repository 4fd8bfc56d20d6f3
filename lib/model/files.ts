// Reading a model directory's JSON files, with errors that name the file at fault.
import { promises as fs } from 'node:fs'
import { Pg25Error } from '../errors'

export async function readText (file: string, what: string): Promise<string> {
  try {
    return await fs.readFile(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new Pg25Error('PG25_NOT_FOUND', `${file}: ${what} is missing`)
    throw new Pg25Error('PG25_NOT_FOUND', `${file}: cannot read ${what} (${(err as Error).message})`)
  }
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
