// The one seam to the addon: what the loaded addon (both builds: the package's and the CUDA emulation's)
// exports, and what its Engine offers, are exactly the names lib/native.ts types (which tsc checks against
// the interfaces), so neither side can grow or lose a function unnoticed.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { ERROR_CODES } from '../../lib/errors'
import { ADDON_EXPORTS, ENGINE_MEMBERS, loadNative } from '../../lib/native'

// Each build is loaded in its own process: one process loads one of them.
const names = (emulation: boolean): { exports: string[], engine: string[] } => {
  const native = path.join(__dirname, '..', '..', 'lib', 'native.js')
  const code = `const a = require(${JSON.stringify(native)}).loadNative();
    process.stdout.write(JSON.stringify({ exports: Object.keys(a), engine: Object.getOwnPropertyNames(a.Engine.prototype).filter(n => n !== 'constructor') }))`
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env: { ...process.env, PG25_CUDA_EMULATION: emulation ? '1' : '0' } })
  if (r.status !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout)
}

for (const emulation of [false, true]) {
  test(`the ${emulation ? 'emulation' : 'package'} build exports what lib/native.ts types, and its Engine has every typed member`, t => {
    const got = names(emulation)
    // The emulation build adds its test hook.
    t.deepEqual(got.exports.filter(n => n !== 'emulationReport').sort(), [...ADDON_EXPORTS].sort())
    t.is(got.exports.includes('emulationReport'), emulation)
    t.deepEqual(got.engine.sort(), [...ENGINE_MEMBERS].sort())
  })
}

test('every code a native error can carry is in lib/errors.ts\'s table', t => {
  const codes = loadNative().errorCodes()
  t.true(codes.length >= 12)
  for (const c of codes) t.true(Object.hasOwn(ERROR_CODES, c), c)
})
