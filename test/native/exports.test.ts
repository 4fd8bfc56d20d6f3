// The package's layered exports: the root loads the pipeline and nothing a server or fleet needs (no
// BullMQ, no Redis client, no HTTP server, and sharp only once an image is handled); the subpaths resolve
// by the package's own name; the fleet without its optional peer dependency names what to install.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const ROOT = path.join(__dirname, '..', '..', '..')

function child (code: string, preload?: string): { status: number | null, stdout: string, stderr: string } {
  const args = [...(preload !== undefined ? ['-r', preload] : []), '-e', code]
  return spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, PG25_CUDA_EMULATION: '0' } })
}

test('the root export loads no server, fleet, queue or image-codec code', t => {
  const r = child('require(\'@pg25/native\'); process.stdout.write(JSON.stringify(Object.keys(require.cache)))')
  t.is(r.status, 0, r.stderr)
  const loaded: string[] = JSON.parse(r.stdout)
  for (const k of loaded) t.notRegex(k, /node_modules[/\\](bullmq|ioredis|msgpackr|luxon|sharp|@img)[/\\]|dist[/\\]lib[/\\](server|fleet|cli)/, k)
  t.true(loaded.length < 80, `${loaded.length} modules`)
})

test('internals are stripped from the published types: Runtime keeps its API, not the native engine', async t => {
  const dts = readFileSync(path.join(ROOT, 'dist', 'lib', 'runtime.d.ts'), 'utf8')
  for (const member of ['static open(', 'fromHost(', 'toHost(', 'freeMemory(', 'dispose(']) t.true(dts.includes(member), member)
  for (const internal of ['engine:', 'call<', 'passNotices(', 'load(']) t.false(dts.includes(internal), internal)
})

test('the subpaths resolve by name: server, fleet, hub', t => {
  const r = child(`const s = require('@pg25/native/server'), f = require('@pg25/native/fleet'), h = require('@pg25/native/hub');
    process.stdout.write([typeof s.createServer, typeof f.startWorker, typeof f.GenerateQueue, typeof h.downloadModel, typeof h.downloadFile].join(' '))`)
  t.is(r.status, 0, r.stderr)
  t.is(r.stdout, 'function function function function function')
})

test('without bullmq, the fleet subpath fails with PG25_MISSING_DEPENDENCY naming it', t => {
  // A resolver that cannot find bullmq, as where it is not installed.
  const hide = path.join(os.tmpdir(), `pg25-hide-bullmq-${process.pid}.js`)
  writeFileSync(hide, `const M = require('module'); const orig = M._resolveFilename;
M._resolveFilename = function (req, ...rest) { if (req === 'bullmq') { const e = new Error("Cannot find module 'bullmq'"); e.code = 'MODULE_NOT_FOUND'; throw e } return orig.call(this, req, ...rest) }`)
  const r = child('try { require(\'@pg25/native/fleet\') } catch (e) { process.stdout.write(e.code + \': \' + e.message) }', hide)
  t.is(r.status, 0, r.stderr)
  t.regex(r.stdout, /^PG25_MISSING_DEPENDENCY: @pg25\/native\/fleet needs bullmq .*npm install bullmq$/)
  const root = child('require(\'@pg25/native\'); process.stdout.write(\'ok\')', hide)
  t.is(root.stdout, 'ok', 'the root does not need it')
})
