import test from 'ava'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { ensureDemoModel } from '../lib/demo/demo-model'
import { TINY } from './helpers'

// The CLI under careless use: a bad -o fails before any loading and never loses a file, numbers parse
// strictly, and `serve` shuts down promptly on SIGTERM even mid-run.
const run = promisify(execFile)
const CLI = path.join(__dirname, '..', 'lib', 'cli.js')
let tmp: string
const children: ChildProcess[] = []
test.before(async () => { tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-cli-safety-')) })
test.after.always(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  await fs.rm(tmp, { recursive: true, force: true })
})

const fails = async (t: any, args: string[], re: RegExp): Promise<void> => {
  const e = await t.throwsAsync(run(process.execPath, [CLI, ...args])) as any
  t.is(e.code, 1)
  t.regex(e.stderr, re)
}

test('-o is checked before the model loads: existing non-PNG files, folders, devices and missing folders', async t => {
  const dir = await fs.mkdtemp(path.join(tmp, 'output-'))
  const notes = path.join(dir, 'notes.txt')
  await fs.writeFile(notes, 'keep me')
  // --model points nowhere: the output is refused first, so nothing was loaded.
  const missing = path.join(tmp, 'no-model')
  await fails(t, ['x', '-q', '--model', missing, '-o', notes], /-o .*notes\.txt: exists and is not a PNG; refusing to replace it/)
  t.is(await fs.readFile(notes, 'utf8'), 'keep me')
  await fails(t, ['x', '-q', '--model', missing, '-o', dir], /is a directory/)
  await fails(t, ['x', '-q', '--model', missing, '-o', '/dev/full'], /-o \/dev\/full: exists and is not a regular file/)
  await fails(t, ['x', '-q', '--model', missing, '-o', path.join(dir, 'nope', 'a.png')], /the folder .*nope does not exist/)
  t.deepEqual(await fs.readdir(dir), ['notes.txt'])
})

test('an existing PNG is replaced atomically: a write that fails leaves it whole, with no temporary file', async t => {
  const dir = await fs.mkdtemp(path.join(tmp, 'atomic-'))
  const out = path.join(dir, 'out.png')
  const original = await sharp({ create: { width: 8, height: 8, channels: 3, background: 'red' } }).png().toBuffer()
  await fs.writeFile(out, original)
  // A 4 KiB file-size limit makes the PNG write fail part-way (EFBIG), as a full disk would.
  const e = await t.throwsAsync(run('bash', ['-c', `ulimit -f 4; exec "${process.execPath}" "${CLI}" x --model "${TINY}" --steps 1 --width 128 --height 128 --device cpu -q -o "${out}"`])) as any
  t.regex(e.stderr, /writing failed .*the file was left as it was/)
  t.true((await fs.readFile(out)).equals(original))
  t.deepEqual(await fs.readdir(dir), ['out.png'])
  await run(process.execPath, [CLI, 'x', '--model', TINY, '--steps', '1', '--width', '64', '--height', '64', '--device', 'cpu', '-q', '-o', out])
  t.is((await sharp(out).metadata()).width, 64)
  t.deepEqual(await fs.readdir(dir), ['out.png'])
})

test('numbers parse strictly, and an empty --model is an error, not the demo', async t => {
  await fails(t, ['x', '--guidance', ''], /--guidance must be a decimal number, got ""/)
  await fails(t, ['x', '--steps', '0x10'], /--steps must be a decimal integer, got "0x10"/)
  await fails(t, ['x', '--seed', '1e3'], /--seed must be a decimal integer/)
  await fails(t, ['x', '-m', '', '-o', path.join(tmp, 'empty-model.png')], /--model must name a model directory, got ""/)
})

test('a damaged demo model cache is rebuilt, and a folder that is not one is left alone', async t => {
  const dir = path.join(tmp, 'demo')
  await ensureDemoModel(dir)
  const weights = path.join(dir, 'unet', 'diffusion_pytorch_model.safetensors')
  const good = await fs.readFile(weights)
  await fs.truncate(weights, 1000)
  await fs.writeFile(path.join(dir, 'model_index.json'), '{')
  t.is(await ensureDemoModel(dir), dir)
  t.true((await fs.readFile(weights)).equals(good))
  const other = path.join(tmp, 'not-a-demo')
  await fs.mkdir(other)
  await fs.writeFile(path.join(other, 'thesis.tex'), 'precious')
  const e = await t.throwsAsync(ensureDemoModel(other))
  t.regex(e!.message, /not-a-demo: exists and is not a demo model folder; refusing to replace it/)
  t.is(await fs.readFile(path.join(other, 'thesis.tex'), 'utf8'), 'precious')
})

test('serve stops within seconds on SIGTERM while a long run is going, answering it 503', async t => {
  const child = spawn(process.execPath, [CLI, 'serve', '--model', TINY, '--port', '0', '--device', 'cpu'], { stdio: ['ignore', 'ignore', 'pipe'] })
  children.push(child)
  let stderr = ''
  child.stderr!.on('data', d => { stderr += String(d) })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  const start = Date.now()
  while (!/listening on http:\/\/127\.0\.0\.1:(\d+)/.test(stderr) && Date.now() - start < 30_000) await new Promise(resolve => setTimeout(resolve, 50))
  const port = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr)![1]
  // About a minute of work on this machine: the server must not wait for it.
  const long = fetch(`http://127.0.0.1:${port}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'x', steps: 1000, width: 128, height: 128 }) })
  for (let i = 0; i < 200; i++) {
    const h = await (await fetch(`http://127.0.0.1:${port}/health`)).json() as any
    if (h.queue.running === 1) break
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  process.kill(child.pid!, 'SIGTERM')
  const code = await Promise.race([exited, new Promise(resolve => setTimeout(() => resolve('still running after 20 s'), 20_000))])
  t.is(code, 0, stderr)
  const r = await long
  t.is(r.status, 503)
  t.is((await r.json() as any).code, 'SHUTTING_DOWN')
  t.regex(stderr, /SIGTERM: cancelling running requests and shutting down[^]*stopped/)
})
