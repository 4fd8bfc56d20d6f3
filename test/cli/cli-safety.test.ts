import test from 'ava'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { ensureDemoModel } from '../../lib/demo/demo-model'
import { TINY } from '../support/helpers'

// The CLI under careless use: every option and -o fail before any loading (proven with a model that
// does not exist: the option's error comes, not the model's), no file is ever lost, numbers parse
// strictly, misspelled flags get a suggestion, and `serve` shuts down promptly on SIGTERM even mid-run.
const run = promisify(execFile)
const CLI = path.join(__dirname, '..', '..', 'lib', 'cli', 'index.js')
let tmp: string
const children: ChildProcess[] = []
test.before(async () => { tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-cli-safety-')) })
test.after.always(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
  await fs.rm(tmp, { recursive: true, force: true })
})

const MISSING = path.join(os.tmpdir(), 'pg25-no-such-model')
const fails = async (t: any, args: string[], re: RegExp): Promise<void> => {
  const e = await t.throwsAsync(run(process.execPath, [CLI, ...args])) as any
  t.is(e.code, 1)
  t.regex(e.stderr, re)
}

test('-o is checked before the model loads: format by extension, existing non-images, folders, devices and missing folders', async t => {
  const dir = await fs.mkdtemp(path.join(tmp, 'output-'))
  const notes = path.join(dir, 'notes.png')
  await fs.writeFile(notes, 'keep me')
  await fs.symlink('/dev/full', path.join(dir, 'device.png'))
  // --model points nowhere: the output is refused first, so nothing was loaded.
  await fails(t, ['x', '--model', MISSING, '-o', notes], /-o .*notes\.png: exists and is not a PNG, JPEG or WebP image; refusing to replace it/)
  t.is(await fs.readFile(notes, 'utf8'), 'keep me')
  await fails(t, ['x', '--model', MISSING, '-o', path.join(dir, 'out.txt')], /-o .*out\.txt: the extension "\.txt" is not a format written here: use \.png, \.jpg, \.jpeg or \.webp/)
  await fails(t, ['x', '--model', MISSING, '-o', path.join(dir, 'out')], /-o .*out: has no extension: use \.png/)
  await fs.mkdir(path.join(dir, 'sub.png'))
  await fails(t, ['x', '--model', MISSING, '-o', path.join(dir, 'sub.png')], /is a directory/)
  await fails(t, ['x', '--model', MISSING, '-o', path.join(dir, 'device.png')], /device\.png: exists and is not a regular file/)
  await fails(t, ['x', '--model', MISSING, '-o', path.join(dir, 'nope', 'a.png')], /the folder .*nope does not exist/)
  // --count: every file it would write is checked; a refused second file leaves nothing behind.
  await fs.writeFile(path.join(dir, 'pair-2.webp'), 'not an image')
  await fails(t, ['x', '--model', MISSING, '--count', '3', '-o', path.join(dir, 'pair.webp')], /-o .*pair-2\.webp: exists and is not a PNG, JPEG or WebP image/)
  t.deepEqual((await fs.readdir(dir)).sort(), ['device.png', 'notes.png', 'pair-2.webp', 'sub.png'])
})

test('every option is checked before the model loads, in the flags\' own names', async t => {
  const bad = path.join(tmp, 'not-an-image.png')
  await fs.writeFile(bad, 'text')
  const cases: Array<[string[], RegExp]> = [
    [['--steps', '0'], /^pg25: --steps must be an integer from 1 to 1000, got 0 \(PG25_INVALID_ARGUMENT\)\n$/],
    [['--width', '100'], /--width must be a multiple of 8 between 8 and 8192, got 100/],
    [['--guidance', '1000'], /--guidance must be a number from 0 to 100, got 1000/],
    [['--scheduler', 'ddim'], /--scheduler must be 'dpmpp-2m' or 'euler', got "ddim" \(a string\)/],
    [['--count', '0'], /--count must be an integer from 1 to 64, got 0/],
    [['--count', '65'], /--count must be an integer from 1 to 64, got 65/],
    [['--seed', '-1'], /--seed must be a non-negative safe integer, got -1/],
    [['--strength', '0.5'], /--strength needs --image/],
    [['--image', bad, '--strength', '0'], /--strength must be in \(0, 1\], got 0/],
    [['--image', bad, '--steps', '2', '--strength', '0.1'], /steps x strength must be at least 1/],
    [['--image', path.join(tmp, 'absent.png')], /--image .*absent\.png is missing/],
    [['--image', bad], /--image .*not-an-image\.png: cannot decode/],
    [['--device', 'gpu'], /--device must be auto, cpu, cuda or cuda:N, got "gpu"/],
    [['--variant', 'fp32'], /--variant must be fp16, got "fp32"/],
    [['--config', TINY], /--config goes with a single-file checkpoint/],
    [['--model', 'x.safetensors'], /x\.safetensors is a single-file checkpoint: give --config/],
    [['--stpes', '3'], /^pg25: unknown option --stpes; did you mean --steps\? \(see pg25 --help\)/],
    [['--guidence', '3'], /did you mean --guidance\?/],
    [['--outptu', 'a.png'], /did you mean --output\?/],
    [['--frobnicate'], /unknown option --frobnicate \(see pg25 --help\)/],
    [['--port', '80'], /--port is an option of pg25 serve/],
    [['--negative', '--steps', '3'], /--negative needs a value, got the flag --steps/],
    [['--steps'], /--steps needs a value/],
    [['--quiet=yes'], /--quiet takes no value/],
    [['--steps', '2', '--steps', '3'], /--steps is given twice/]
  ]
  for (const [args, re] of cases) {
    // The model would fail to load (it does not exist) and the output is fine: the option error comes first, before any loading line.
    const model = args.includes('--model') ? [] : ['--model', MISSING]
    const e = await t.throwsAsync(run(process.execPath, [CLI, 'x', ...model, '-o', path.join(tmp, 'never.png'), ...args])) as any
    t.is(e.code, 1, args.join(' '))
    t.regex(e.stderr, re, args.join(' '))
    t.notRegex(e.stderr, /loading|not found \(PG25_NOT_FOUND\)/, args.join(' '))
  }
  t.false(await fs.stat(path.join(tmp, 'never.png')).then(() => true, () => false))
  // serve's flags too: checked before its model loads.
  await fails(t, ['serve', '--model', MISSING, '--queue', '0'], /--queue must be at least 1/)
  await fails(t, ['serve', '--model', MISSING, '--steps', '3'], /--steps is an option of pg25 "<prompt>", not of pg25 serve/)
  await fails(t, ['serve', '--model', MISSING, '--prot', '3'], /did you mean --port\?/)
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
  await fails(t, ['x', '--strength', '.5.'], /--strength must be a decimal number/)
  await fails(t, ['x', '-m', '', '-o', path.join(tmp, 'empty-model.png')], /--model must name a model folder, Hub id or \.safetensors file, got ""/)
})

test('a damaged demo model cache is rebuilt, and a folder that is not one is left alone', async t => {
  const dir = path.join(tmp, 'demo')
  await ensureDemoModel(dir)
  const weights = path.join(dir, 'unet', 'diffusion_pytorch_model.fp16.safetensors')
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

test('an output name near the 255-byte limit is written: the temporary name is short', async t => {
  const dir = await fs.mkdtemp(path.join(tmp, 'long-'))
  const out = path.join(dir, `${'a'.repeat(240)}.png`) // 244 bytes: a valid name
  const args = ['x', '--model', TINY, '--steps', '1', '--width', '64', '--height', '64', '--device', 'cpu', '-q', '-o', out]
  await run(process.execPath, [CLI, ...args])
  t.is((await sharp(out).metadata()).width, 64)
  t.deepEqual(await fs.readdir(dir), [path.basename(out)])
})

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`${signal} during a local run removes the temporary files of every output and exits 130`, async t => {
    const dir = await fs.mkdtemp(path.join(tmp, `${signal}-`))
    const args = ['x', '--model', TINY, '--steps', '1000', '--count', '3', '--width', '64', '--height', '64', '--device', 'cpu',
      '-o', path.join(dir, 'int.png')]
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    children.push(child)
    let stderr = ''
    child.stderr!.on('data', d => { stderr += String(d) })
    const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
    // The temporaries exist from before the model loads; the run is under way once a step is reported.
    for (let i = 0; i < 600 && !/steps: \d+\/1000/.test(stderr); i++) await new Promise(resolve => setTimeout(resolve, 50))
    t.is((await fs.readdir(dir)).filter(f => f.endsWith('.tmp')).length, 3, stderr)
    process.kill(child.pid!, signal)
    t.is(await exited, 130, stderr)
    t.regex(stderr, new RegExp(`${signal}: stopping; temporary files are removed[^]*pg25: interrupted; no file was written`))
    t.deepEqual(await fs.readdir(dir), [])
  })
}
