// The real Playground v2.5 configs of the reference data (../shared/reference/full), as component sources
// for synthetic (seeded) weights: the full-size work without the 14 GB of real weights.
import fs from 'node:fs'
import path from 'node:path'
import type { ComponentSource } from '../lib/model/model-dir'

export const REF = path.resolve(process.env.PG25_REFERENCE ?? path.join(__dirname, '..', '..', '..', 'shared', 'reference'))
const FULL = path.join(REF, 'full')

export function fullConfig (name: string): ComponentSource {
  const index = JSON.parse(fs.readFileSync(path.join(FULL, 'model_index.json'), 'utf8'))
  const configPath = path.join(FULL, name, 'config.json')
  return { name, className: index[name][1], configPath, configText: fs.readFileSync(configPath, 'utf8'), files: [], variant: null }
}
