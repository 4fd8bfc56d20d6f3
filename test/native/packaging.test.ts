import test from 'ava'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Pg25Error } from '../../lib/errors'
import { loadAddonFrom } from '../../lib/native'

// The loader where the install step never ran (pnpm 10, --ignore-scripts on a platform without a prebuilt
// binary): no binary at all is PG25_NO_BINARY with the command that builds one; a binary that is there but
// does not load is a different failure, named by its file.
test('a package with no compiled addon fails with PG25_NO_BINARY and says how to build it', async t => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-nobinary-'))
  try {
    await fs.writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: '@pg25/native', version: '0.0.0' }))
    const err = t.throws(() => loadAddonFrom(dir), { instanceOf: Pg25Error })
    t.is((err as Pg25Error).code, 'PG25_NO_BINARY')
    t.true(err!.message.includes('`npm rebuild @pg25/native`'), err!.message)
    t.true(err!.message.includes(`${process.platform}-${process.arch}`), err!.message)

    const broken = path.join(dir, 'prebuilds', `${process.platform}-${process.arch}`, '@pg25+native.glibc.node')
    await fs.mkdir(path.dirname(broken), { recursive: true })
    await fs.writeFile(broken, 'not an ELF file')
    const bad = t.throws(() => loadAddonFrom(dir), { instanceOf: Pg25Error })
    t.is((bad as Pg25Error).code, 'PG25_INTERNAL')
    t.true(bad!.message.includes(broken), bad!.message)
    t.true(bad!.message.includes('`npm rebuild @pg25/native`'), bad!.message)
  } finally {
    await fs.rm(dir, { recursive: true, force: true })
  }
})

test('the addon this checkout built loads through the same loader and reports its backends', t => {
  const { addon } = loadAddonFrom(path.join(__dirname, '..', '..', '..'))
  const info = addon.runtimeInfo()
  t.is(typeof info.cudaCompiled, 'boolean')
  // A build without CUDA says so in its own words; one with it describes the GPU (or its absence) instead.
  t.is(/CUDA was not compiled into this build/.test(info.cuda), !info.cudaCompiled, info.cuda)
})
