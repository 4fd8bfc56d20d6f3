import test from 'ava'
import { spawn } from 'node:child_process'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { loadNative } from '../../lib/native'
import { Pg25Error, fromNative } from '../../lib/errors'
import { serializeSafetensors, toHalfBits } from '../../lib/io/safetensors-writer'

const native = loadNative()
let dir: string
test.before(async () => { dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-st-')) })
test.after.always(async () => { await fs.rm(dir, { recursive: true, force: true }) })

let n = 0
async function file (bytes: Buffer): Promise<string> {
  const p = path.join(dir, `f${n++}.safetensors`)
  await fs.writeFile(p, bytes)
  return p
}

function raw (header: unknown, data: Buffer = Buffer.alloc(0), declared?: bigint): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header))
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(declared ?? BigInt(json.length))
  return Buffer.concat([len, json, data])
}

async function rejects (t: any, bytes: Buffer, pattern: RegExp): Promise<void> {
  const p = await file(bytes)
  const err = await t.throwsAsync(async () => { try { await native.inspectSafetensors(p) } catch (e) { throw fromNative(e) } })
  t.true(err instanceof Pg25Error)
  t.is((err as Pg25Error).code, 'PG25_BAD_WEIGHTS')
  t.true(err.message.includes(p), `message names the file: ${err.message}`)
  t.regex(err.message, pattern)
}

const good = { a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, b: { dtype: 'F16', shape: [4], data_offsets: [16, 24] } }

test('a valid file lists its tensors with dtypes, shapes and ranges', async t => {
  const p = await file(raw(good, Buffer.alloc(24)))
  const entries = await native.inspectSafetensors(p)
  t.deepEqual(entries.map(e => [e.name, e.dtype, e.shape, e.begin, e.end]), [['a', 'F32', [2, 2], 0, 16], ['b', 'F16', [4], 16, 24]])
})

test('an empty file is rejected', async t => { await rejects(t, Buffer.alloc(0), /too small/) })
test('a file shorter than its length prefix is rejected', async t => { await rejects(t, Buffer.from([1, 2, 3]), /too small/) })
test('a truncated file is rejected', async t => {
  const whole = raw(good, Buffer.alloc(24))
  await rejects(t, whole.subarray(0, whole.length - 5), /"b".*outside the data section/)
  await rejects(t, whole.subarray(0, 20), /runs past the end/)
})
test('a huge declared header is rejected before reading it', async t => {
  await rejects(t, raw('{}', Buffer.alloc(0), 1n << 40n), /exceeds the 100 MB limit/)
  await rejects(t, raw('{}', Buffer.alloc(0), (1n << 64n) - 1n), /exceeds the 100 MB limit/)
})
test('garbage JSON is rejected', async t => {
  await rejects(t, raw('{"a": {"dtype": "F32", '), /not valid JSON/)
  await rejects(t, raw('\u0000\u0001garbage'), /not valid JSON/)
  await rejects(t, raw('[1, 2, 3]'), /not a JSON object/)
  await rejects(t, raw('{"a": 1} trailing'), /not valid JSON/)
  await rejects(t, raw('['.repeat(100000)), /not valid JSON/)
})
test('overlapping ranges are rejected', async t => {
  await rejects(t, raw({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }, Buffer.alloc(24)), /"a" and "b" overlap/)
})
test('a byte range that disagrees with shape x dtype is rejected', async t => {
  await rejects(t, raw({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } }, Buffer.alloc(16)), /"a".*holds 16 bytes but shape x dtype needs 12/)
  await rejects(t, raw({ a: { dtype: 'F16', shape: [3, 3], data_offsets: [0, 16] } }, Buffer.alloc(16)), /needs 18/)
})
test('shapes whose byte size overflows 64 bits are rejected', async t => {
  await rejects(t, raw({ a: { dtype: 'F64', shape: [4294967296, 4294967296], data_offsets: [0, 8] } }, Buffer.alloc(8)), /overflows 64 bits/)
})
test('ranges outside the file, reversed ranges and bad offsets are rejected', async t => {
  await rejects(t, raw({ a: { dtype: 'U8', shape: [8], data_offsets: [0, 8] } }, Buffer.alloc(4)), /outside the data section/)
  await rejects(t, raw({ a: { dtype: 'U8', shape: [0], data_offsets: [8, 4] } }, Buffer.alloc(8)), /end before they begin/)
  await rejects(t, raw({ a: { dtype: 'U8', shape: [1], data_offsets: [-1, 0] } }, Buffer.alloc(8)), /non-negative/)
  await rejects(t, raw({ a: { dtype: 'U8', shape: [1], data_offsets: [0] } }, Buffer.alloc(8)), /\[begin, end\]/)
})
test('unknown dtypes, bad shapes and duplicate names are rejected', async t => {
  await rejects(t, raw({ a: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, Buffer.alloc(1)), /unknown dtype "F8_E4M3"/)
  await rejects(t, raw({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, Buffer.alloc(4)), /non-negative integers/)
  await rejects(t, raw({ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, Buffer.alloc(4)), /non-negative integers/)
  await rejects(t, raw({ a: { dtype: 'F32', data_offsets: [0, 4] } }, Buffer.alloc(4)), /missing shape/)
  await rejects(t, raw('{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', Buffer.alloc(2)), /"a" appears twice/)
})
test('every listed dtype is accepted', async t => {
  const dtypes: Array<[string, number]> = [['F16', 2], ['BF16', 2], ['F32', 4], ['F64', 8], ['I64', 8], ['I32', 4], ['U8', 1], ['BOOL', 1]]
  let off = 0
  const header: Record<string, unknown> = {}
  for (const [d, s] of dtypes) { header[d] = { dtype: d, shape: [3], data_offsets: [off, off + 3 * s] }; off += 3 * s }
  const entries = await native.inspectSafetensors(await file(raw(header, Buffer.alloc(off))))
  t.deepEqual(entries.map(e => e.dtype), dtypes.map(d => d[0]))
})

test('fp16, bf16 and fp32 weights read back as the same float32 values', async t => {
  const data = Float32Array.from([0, 1, -2.5, 0.333251953125, 65504, 6.103515625e-5, -3.0517578125e-5, 1025])
  const buf = serializeSafetensors([
    { name: 'f32', dtype: 'F32', shape: [8], data },
    { name: 'f16', dtype: 'F16', shape: [8], data },
    { name: 'bf16', dtype: 'BF16', shape: [2, 4], data: Float32Array.from([1, -2, 0.5, 3, 1.5, -0.25, 256, 0]) }
  ])
  const p = await file(buf)
  const [a, b, c] = await native.readTensors([{ path: p, paddle: false }], [
    { name: 'f32', shape: [8], linear: false }, { name: 'f16', shape: [8], linear: false }, { name: 'bf16', shape: [2, 4], linear: false }])
  t.deepEqual(Array.from(a), Array.from(data))
  t.deepEqual(Array.from(b), Array.from(data)) // every value above is exact in fp16
  t.deepEqual(Array.from(c), [1, -2, 0.5, 3, 1.5, -0.25, 256, 0])
  t.is(toHalfBits(65504), 0x7bff)
})

test('reading a tensor with the wrong shape or a non-float dtype names the tensor', async t => {
  const p = await file(raw({ w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] }, ids: { dtype: 'I64', shape: [1], data_offsets: [24, 32] } }, Buffer.alloc(32)))
  const e1 = await t.throwsAsync(async () => { try { await native.readTensors([{ path: p, paddle: false }], [{ name: 'w', shape: [3, 2], linear: false }]) } catch (e) { throw fromNative(e) } })
  t.is((e1 as Pg25Error).code, 'PG25_BAD_WEIGHTS')
  t.regex(e1.message, /"w" has shape \[2, 3\]; the model config needs \[3, 2\]/)
  const e2 = await t.throwsAsync(async () => { try { await native.readTensors([{ path: p, paddle: false }], [{ name: 'ids', shape: [1], linear: false }]) } catch (e) { throw fromNative(e) } })
  t.regex(e2.message, /"ids" has dtype I64/)
  const e3 = await t.throwsAsync(async () => { try { await native.readTensors([{ path: p, paddle: false }], [{ name: 'nope', shape: [1], linear: false }]) } catch (e) { throw fromNative(e) } })
  t.is((e3 as Pg25Error).code, 'PG25_MISSING_WEIGHTS')
  t.regex(e3.message, /"nope"/)
})

test('a missing weight file is PG25_NOT_FOUND, and a directory is refused', async t => {
  const e = await t.throwsAsync(async () => { try { await native.inspectSafetensors(path.join(dir, 'missing.safetensors')) } catch (x) { throw fromNative(x) } })
  t.is((e as Pg25Error).code, 'PG25_NOT_FOUND')
  const e2 = await t.throwsAsync(async () => { try { await native.inspectSafetensors(dir) } catch (x) { throw fromNative(x) } })
  t.is((e2 as Pg25Error).code, 'PG25_BAD_WEIGHTS')
})

test('a file truncated while it is read gives PG25_BAD_WEIGHTS, never a signal (it is read, not mapped)', async t => {
  // 48 MB of F16 (converted piece by piece) and 16 MB of F32 (read straight into the result).
  const bytes = serializeSafetensors([
    { name: 'half', dtype: 'F16', shape: [24, 2 ** 20], data: new Float32Array(24 * 2 ** 20).fill(0.5) },
    { name: 'full', dtype: 'F32', shape: [4, 2 ** 20], data: new Float32Array(4 * 2 ** 20).fill(0.25) }
  ])
  const p = await file(bytes)
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'support', 'read-child.js'), p, '40'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let started = false
  child.stdout!.on('data', d => { stdout += String(d) })
  child.stderr!.on('data', () => { started = true })
  type Exit = { code: number | null, signal: NodeJS.Signals | null }
  const exited = new Promise<Exit>(resolve => child.on('exit', (code, signal) => resolve({ code, signal })))
  let running = true
  void exited.then(() => { running = false })
  for (let i = 0; i < 400 && !started; i++) await new Promise(resolve => setTimeout(resolve, 25))
  // Cut to half and restore, over and over, while the child reads: some reads meet the short file.
  const tail = bytes.subarray(bytes.length >> 1)
  for (let i = 0; running && i < 2000; i++) {
    await fs.truncate(p, bytes.length >> 1)
    await new Promise(resolve => setTimeout(resolve, 3))
    const fh = await fs.open(p, 'r+')
    await fh.write(tail, 0, tail.length, bytes.length >> 1)
    await fh.close()
    await new Promise(resolve => setTimeout(resolve, 3))
  }
  const { code, signal } = await exited
  t.is(signal, null, 'killed by a signal')
  t.is(code, 0)
  const results = JSON.parse(stdout) as string[]
  t.is(results.length, 40)
  t.deepEqual([...new Set(results)].filter(r => r !== 'ok' && r !== 'PG25_BAD_WEIGHTS'), [])
  t.true(results.includes('PG25_BAD_WEIGHTS'), `no read met the truncated file: ${results.join(' ')}`)
})
