// The fleet against a real Redis: worker processes sharing jobs, results equal to local runs, bad jobs
// failing alone, cancellation, result removal, and the HTTP front (createServer over a GenerateQueue).
import test from 'ava'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import sharp from 'sharp'
import { AbortError, Pipeline, readPngText, type GenerateOptions, type GenerateResult } from '../../lib'
import { createServer } from '../../lib/server'
import { GenerateQueue, startWorker, type FleetWorker } from '../../lib/fleet'
import { spawnWorker, type WorkerProcess } from '../support/fleet-procs'
import { TINY } from '../support/helpers'
import { startRedis, type TestRedis } from '../support/redis'

let redis: TestRedis
let pipe: Pipeline
let raw: Redis
test.before(async () => {
  redis = await startRedis()
  pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  raw = new Redis(redis.url)
})
test.after.always(async () => {
  raw?.disconnect()
  await pipe?.dispose()
  await redis?.stop()
})

/** Polls `fn` until it returns true, at most `ms`. */
async function until (fn: () => Promise<boolean> | boolean, ms = 15_000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    if (await fn()) return true
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return false
}

async function sameAsLocal (r: GenerateResult, prompt: string, o: GenerateOptions): Promise<boolean> {
  const local = await pipe.generate(prompt, o)
  if (r.seed !== local.seed || r.width !== local.width || r.height !== local.height || r.images.length !== local.images.length) return false
  for (let i = 0; i < r.images.length; i++) {
    if (!Buffer.from(r.images[i].data).equals(Buffer.from(local.images[i].data))) return false
    if (!(await r.images[i].toPNG()).equals(await local.images[i].toPNG())) return false
  }
  return true
}

test.serial('three worker processes share 30 jobs; every result is byte-equal to a local run', async t => {
  const queue = 'share'
  const workers: WorkerProcess[] = []
  const fleet = new GenerateQueue({ redis: redis.url, queue })
  t.teardown(async () => {
    await fleet.close()
    await Promise.all(workers.map(async w => await w.stop()))
  })
  workers.push(...await Promise.all([0, 1, 2].map(async () => await spawnWorker(redis.url, ['--queue', queue]))))
  const jobs = Array.from({ length: 30 }, (_, i) => ({ prompt: `a cat number ${i}`, options: { width: 64, height: 64, steps: 3, seed: 1000 + i, count: i % 5 === 0 ? 2 : 1 } }))
  const results = await Promise.all(jobs.map(async j => await fleet.generate(j.prompt, j.options)))
  for (let i = 0; i < jobs.length; i++) t.true(await sameAsLocal(results[i], jobs[i].prompt, jobs[i].options), `job ${i}`)
  t.regex(results[0].images[1].parameters, /Seed: 1000, Size: 64x64, Batch size: 2, Batch pos: 1/)
  const done = workers.map(w => w.done())
  t.is(done.flat().length, 30)
  t.is(new Set(done.flat()).size, 30, 'no job ran twice')
  for (const d of done) t.true(d.length >= 1, `every worker took jobs: ${done.map(x => x.length).join(', ')}`)
})

test.serial('a malformed job fails alone with its error code, is not retried, and the worker goes on', async t => {
  const queue = 'malformed'
  const worker = await startWorker(pipe, { redis: redis.url, queue })
  const bull = new Queue(queue, { connection: { port: redis.port, host: '127.0.0.1' } })
  const fleet = new GenerateQueue({ redis: redis.url, queue })
  t.teardown(async () => { await fleet.close(); await bull.close(); await worker.close() })
  const bad: Array<[unknown, RegExp]> = [
    ['not json', /^PG25_INVALID_ARGUMENT: the job data must be a JSON object/],
    [[1, 2], /^PG25_INVALID_ARGUMENT: the body must be a JSON object/],
    [{ prompt: 5 }, /^PG25_INVALID_ARGUMENT: "prompt" must be a string/],
    [{ prompt: 'x', bogus: 1 }, /^PG25_INVALID_ARGUMENT: unknown field "bogus"/],
    [{ prompt: 'x', width: 100, height: 64 }, /^PG25_INVALID_ARGUMENT: width must be a multiple of 8/],
    [{ prompt: 'x', image: 'not base64!' }, /^PG25_INVALID_ARGUMENT: "image" must be a non-empty base64/],
    [{ prompt: 'x', preview: 'yes' }, /^PG25_INVALID_ARGUMENT: "preview" must be true or false/],
    [{ prompt: 'x', width: 4096, height: 4096, count: 2 }, /^PG25_INVALID_ARGUMENT: the job asks for 33554432 output pixels/]
  ]
  const added = await Promise.all(bad.map(async ([data]) => await bull.add('generate', data, { attempts: 3 })))
  t.true(await until(async () => (await bull.getJobCounts('failed')).failed === bad.length))
  for (let i = 0; i < bad.length; i++) {
    const job = await bull.getJob(added[i].id!)
    t.regex(job!.failedReason, bad[i][1])
    t.is(job!.attemptsMade, 1, 'UnrecoverableError: not retried despite attempts: 3')
  }
  // Through the client the code comes back on a Pg25Error; then a good job runs on the same worker.
  const err = await t.throwsAsync(fleet.generate('x', { width: 100, height: 64 }))
  t.is((err as any).code, 'PG25_INVALID_ARGUMENT')
  const o = { width: 64, height: 64, steps: 2, seed: 3 }
  t.true(await sameAsLocal(await fleet.generate('a good one', o), 'a good one', o))
  t.is(worker.failed, bad.length + 1)
  t.is(worker.completed, 1)
})

test.serial('a cancelled job: removed while it waits, stopped between steps while it runs', async t => {
  const queue = 'cancel'
  const worker = await startWorker(pipe, { redis: redis.url, queue, cancelPollMs: 100 })
  const bull = new Queue(queue, { connection: { port: redis.port, host: '127.0.0.1' } })
  const fleet = new GenerateQueue({ redis: redis.url, queue })
  t.teardown(async () => { await fleet.close(); await bull.close(); await worker.close(0) })
  const long = { width: 128, height: 128, steps: 400, seed: 1 }
  const running = new AbortController()
  let lastStep = 0
  const first = fleet.generate('a long one', { ...long, signal: running.signal, onStep: s => { lastStep = s.step } })
  t.true(await until(() => lastStep >= 2), 'the long job runs')
  const waiting = new AbortController()
  const second = fleet.generate('a waiting one', { ...long, signal: waiting.signal })
  let waitingId: string | undefined
  t.true(await until(async () => { waitingId = (await bull.getWaiting())[0]?.id; return waitingId !== undefined }))
  waiting.abort()
  await t.throwsAsync(second, { instanceOf: AbortError })
  t.true(await until(async () => await bull.getJob(waitingId!) === undefined), 'the waiting job is removed')
  const runningId = (await bull.getActive())[0].id!
  running.abort()
  await t.throwsAsync(first, { instanceOf: AbortError })
  t.true(await until(async () => await bull.getJobState(runningId) === 'failed'), 'the running job stops')
  const job = await bull.getJob(runningId)
  t.is(job!.failedReason, 'ABORT_ERR: cancelled by its client')
  t.true((job!.progress as any).step < long.steps, `stopped at step ${(job!.progress as any).step} of ${long.steps}`)
  t.is(worker.running, 0)
  const o = { width: 64, height: 64, steps: 2, seed: 9 }
  t.true(await sameAsLocal(await fleet.generate('after', o), 'after', o), 'the worker goes on')
})

test.serial('results leave Redis when read, or at their age; finished jobs are kept by age and count', async t => {
  const queue = 'removal'
  const worker = await startWorker(pipe, { redis: redis.url, queue })
  const bull = new Queue(queue, { connection: { port: redis.port, host: '127.0.0.1' } })
  const fleet = new GenerateQueue({ redis: redis.url, queue, removeOnComplete: { age: 2, count: 2 } })
  t.teardown(async () => { await fleet.close(); await bull.close(); await worker.close() })
  const resultKeys = async (): Promise<string[]> => await raw.keys(`bull:${queue}:pg25:result:*`)
  for (let i = 0; i < 4; i++) await fleet.generate('x', { width: 64, height: 64, steps: 1, seed: i })
  t.deepEqual(await resultKeys(), [], 'read results are deleted')
  t.is((await bull.getJobCounts('completed')).completed, 2, 'count: 2 keeps two finished jobs')
  // A job whose client never reads it: its images expire with the job's age.
  const orphan = await bull.add('generate', { prompt: 'unread', width: 64, height: 64, steps: 1 }, { removeOnComplete: { age: 2 } })
  t.true(await until(async () => await bull.getJobState(orphan.id!) === 'completed'))
  const ttl = await raw.ttl(`bull:${queue}:pg25:result:${orphan.id!}`)
  t.true(ttl >= 1 && ttl <= 2, `ttl ${ttl}`)
  t.true(await until(async () => (await resultKeys()).length === 0, 5000), 'unread images expire')
  // BullMQ removes jobs past their age when a later job finishes.
  await new Promise(resolve => setTimeout(resolve, 2100))
  await fleet.generate('later', { width: 64, height: 64, steps: 1, seed: 0 })
  t.is((await bull.getJobCounts('completed')).completed, 1, 'jobs past age 2 s are gone')
})

test.serial('GET /health of a fleet front: queue depth and live workers', async t => {
  const queue = 'health'
  const fleet = new GenerateQueue({ redis: redis.url, queue })
  t.teardown(async () => { await fleet.close() })
  const before = await fleet.health() as any
  t.deepEqual(before.fleet.workers, [])
  const worker: FleetWorker = await startWorker(pipe, { redis: redis.url, queue, model: 'tiny' })
  t.teardown(async () => { await worker.close() })
  const after = await fleet.health() as any
  t.is(after.fleet.redis, 'ok')
  t.is(after.fleet.workers.length, 1)
  t.like(after.fleet.workers[0], { id: worker.id, device: 'cpu', model: 'tiny', pid: process.pid, defaultSize: pipe.defaultSize })
  t.deepEqual(fleet.defaultSize, pipe.defaultSize)
  await worker.close()
  t.deepEqual((await fleet.health() as any).fleet.workers, [], 'a closed worker leaves the registry')
})

test.serial('createServer over a GenerateQueue: the same endpoints and answers, served by the fleet', async t => {
  const queue = 'front'
  const worker = await startWorker(pipe, { redis: redis.url, queue, cancelPollMs: 100 })
  const fleet = new GenerateQueue({ redis: redis.url, queue })
  const server = createServer(fleet, { queueLimit: 3 })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(async () => { await server.shutdown(1000); await fleet.close(); await worker.close(0) })
  const post = async (body: unknown): Promise<Response> => await fetch(`${base}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

  const r = await post({ prompt: 'a cat', steps: 2, width: 64, height: 64, seed: 4 })
  t.is(r.status, 200)
  t.is(r.headers.get('x-pg25-seed'), '4')
  const png = Buffer.from(await r.arrayBuffer())
  t.regex(readPngText(png).parameters, /Seed: 4/)
  const { data } = await sharp(png).raw().toBuffer({ resolveWithObject: true })
  t.deepEqual(new Uint8Array(data), (await pipe.generate('a cat', { steps: 2, width: 64, height: 64, seed: 4 })).images[0].data)

  const j = await (await post({ prompt: 'a cat', steps: 1, width: 64, height: 64, seed: 5, count: 2, response: 'json', metadata: false })).json() as any
  t.is(j.seed, 5)
  t.is(j.images.length, 2)
  t.deepEqual(readPngText(Buffer.from(j.images[1], 'base64')), {})

  for (const [body, status, re] of [[{ prompt: 'x', width: 100, height: 64 }, 400, /width must be a multiple of 8/], [{ prompt: 'x', bogus: 1 }, 400, /unknown field/], [{ prompt: 'x', width: 4096, height: 4096, count: 2 }, 413, /output pixels/]] as const) {
    const res = await post(body)
    t.is(res.status, status)
    t.regex((await res.json() as any).error, re)
  }

  const health = await (await fetch(`${base}/health`)).json() as any
  t.is(health.device, 'fleet')
  t.is(health.fleet.workers[0].id, worker.id)
  t.like(health.fleet, { redis: 'ok', waiting: 0, active: 0 })

  // A client that disconnects cancels its job in the fleet.
  const gone = http.request(`${base}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' } })
  gone.on('error', () => {})
  gone.end(JSON.stringify({ prompt: 'long', width: 128, height: 128, steps: 400, seed: 1 }))
  const bull = new Queue(queue, { connection: { port: redis.port, host: '127.0.0.1' } })
  t.teardown(async () => { await bull.close() })
  let activeId: string | undefined
  t.true(await until(async () => { activeId = (await bull.getActive())[0]?.id; return activeId !== undefined }))
  gone.destroy()
  t.true(await until(async () => await bull.getJobState(activeId!) === 'failed'))
  t.is((await bull.getJob(activeId!))!.failedReason, 'ABORT_ERR: cancelled by its client')
  t.like(server.stats(), { cancelled: 1 })
})

test.serial('pg25 serve --redis fronts the fleet over HTTP, and stops on SIGTERM', async t => {
  const queue = 'serve-cli'
  const worker = await startWorker(pipe, { redis: redis.url, queue })
  t.teardown(async () => { await worker.close() })
  const server = spawn(process.execPath, [path.join(__dirname, '..', '..', 'lib', 'cli', 'index.js'), 'serve', '--redis', redis.url, '--redis-queue', queue, '--port', '0'], { stdio: ['ignore', 'ignore', 'pipe'] })
  const exited = new Promise(resolve => server.once('exit', code => resolve(code)))
  t.teardown(async () => { if (server.exitCode === null) server.kill('SIGKILL'); await exited })
  let log = ''
  const port = await new Promise<number>((resolve, reject) => {
    server.stderr!.on('data', (d: Buffer) => {
      log += d.toString()
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+) \(fleet/.exec(log)
      if (m !== null) resolve(Number(m[1]))
    })
    server.once('exit', code => reject(new Error(`pg25 serve exited (${code}): ${log}`)))
  })
  const r = await fetch(`http://127.0.0.1:${port}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'over http', steps: 2, width: 64, height: 64, seed: 8, response: 'json' }) })
  t.is(r.status, 200)
  const j = await r.json() as any
  const { data } = await sharp(Buffer.from(j.images[0], 'base64')).raw().toBuffer({ resolveWithObject: true })
  t.deepEqual(new Uint8Array(data), (await pipe.generate('over http', { steps: 2, width: 64, height: 64, seed: 8 })).images[0].data)
  const health = await (await fetch(`http://127.0.0.1:${port}/health`)).json() as any
  t.deepEqual(health.fleet.workers.map((w: any) => w.id), [worker.id])
  server.kill('SIGTERM')
  t.is(await exited, 0)
})

test.serial('pg25 "<prompt>" --redis submits to the fleet and writes the result', async t => {
  const queue = 'cli-submit'
  const worker = await startWorker(pipe, { redis: redis.url, queue })
  t.teardown(async () => { await worker.close() })
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg25-fleet-cli-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const out = path.join(dir, 'out.png')
  const cli = path.join(__dirname, '..', '..', 'lib', 'cli', 'index.js')
  // Not spawnSync: the worker runs in this process's event loop.
  const start = (args: string[]): { child: ChildProcess, done: Promise<{ status: number | null, stdout: string, stderr: string }> } => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    return { child, done: new Promise(resolve => child.once('close', status => { clearTimeout(timer); resolve({ status, stdout, stderr }) })) }
  }
  const run = async (args: string[]): ReturnType<typeof start>['done'] => await start(args).done
  const r = await run(['a fleet cat', '--redis', redis.url, '--queue', queue, '--steps', '2', '--width', '64', '--height', '64', '--seed', '3', '-o', out, '-q', '--json'])
  t.is(r.status, 0, String(r.stderr))
  t.like(JSON.parse(String(r.stdout)), { seed: 3, width: 64, device: 'fleet', model: 'fleet' })
  const { data } = await sharp(readFileSync(out)).raw().toBuffer({ resolveWithObject: true })
  t.deepEqual(new Uint8Array(data), (await pipe.generate('a fleet cat', { steps: 2, width: 64, height: 64, seed: 3 })).images[0].data)
  t.regex(readPngText(readFileSync(out)).parameters, /Seed: 3/)
  const refused = await run(['x', '--redis', redis.url, '--model', TINY, '-o', path.join(dir, 'no.png')])
  t.is(refused.status, 1)
  t.regex(String(refused.stderr), /--model does not apply with --redis/)

  // Ctrl-C while the fleet runs the job cancels it there.
  const bull = new Queue(queue, { connection: { port: redis.port, host: '127.0.0.1' } })
  t.teardown(async () => { await bull.close() })
  const long = start(['a long one', '--redis', redis.url, '--queue', queue, '--steps', '400', '--width', '128', '--height', '128', '-o', path.join(dir, 'long.png'), '-q'])
  let activeId: string | undefined
  t.true(await until(async () => { activeId = (await bull.getActive())[0]?.id; return activeId !== undefined }))
  long.child.kill('SIGINT')
  t.is((await long.done).status, 130) // as a shell reports a run ended by a signal
  t.true(await until(async () => await bull.getJobState(activeId!) === 'failed'))
  t.is((await bull.getJob(activeId!))!.failedReason, 'ABORT_ERR: cancelled by its client')
})

test.serial('progress carries previews when asked, and latent output comes back as latents', async t => {
  const queue = 'preview'
  const worker = await startWorker(pipe, { redis: redis.url, queue })
  const fleet = new GenerateQueue({ redis: redis.url, queue })
  t.teardown(async () => { await fleet.close(); await worker.close() })
  const o = { width: 64, height: 64, steps: 3, seed: 6, count: 2 }
  const remote: any[] = []
  const local: any[] = []
  await fleet.generate('previews', { ...o, preview: true, onStep: s => remote.push(s) })
  await pipe.generate('previews', { ...o, preview: true, onStep: s => local.push(s) })
  t.is(remote.length, 3)
  for (let i = 0; i < 3; i++) {
    t.like(remote[i], { step: local[i].step, steps: 3, sigma: local[i].sigma })
    t.is(remote[i].previews.length, 2)
    const frames = (previews: any[]): unknown[] => previews.map((p: any) => [p.width, p.height, Buffer.from(p.data)])
    t.deepEqual(frames(remote[i].previews), frames(local[i].previews))
  }
  const steps: any[] = []
  await fleet.generate('no previews', { ...o, onStep: s => steps.push(s) })
  t.is(steps.length, 3)
  t.is(steps[0].previews, undefined)
  const latent = await fleet.generate('latent', { ...o, outputType: 'latent' })
  t.deepEqual(latent.images, [])
  t.deepEqual(latent.latents, (await pipe.generate('latent', { ...o, outputType: 'latent' })).latents)
})

test.serial('bad fleet options and calls are refused by name, before anything is queued', async t => {
  const code = { code: 'PG25_INVALID_ARGUMENT' } as const
  t.throws(() => new GenerateQueue({ redis: 'http://127.0.0.1:6379' }), { ...code, message: /redis must be a redis:\/\/ or rediss:\/\/ URL/ })
  t.throws(() => new GenerateQueue({ redis: redis.url, queue: 'a b' }), { ...code, message: /queue must be 1 to 100 letters/ })
  t.throws(() => new GenerateQueue({ redis: redis.url, removeOnComplete: { age: 0 } }), { ...code, message: /removeOnComplete must be/ })
  await t.throwsAsync(startWorker(pipe, { redis: redis.url, concurrency: 0 }), { ...code, message: /concurrency must be a positive integer/ })
  await t.throwsAsync(startWorker(pipe, { redis: redis.url, maxStalledCount: -1 }), { ...code, message: /maxStalledCount/ })
  const queue = 'refusals'
  const fleet = new GenerateQueue({ redis: redis.url, queue })
  const bull = new Queue(queue, { connection: { port: redis.port, host: '127.0.0.1' } })
  t.teardown(async () => { await fleet.close(); await bull.close() })
  await t.throwsAsync(fleet.generate('x', { latents: new Float32Array(4) }), { ...code, message: /latents cannot be sent to a fleet/ })
  await t.throwsAsync(fleet.generate('x', { bogus: 1 } as any), { ...code, message: /unknown field "bogus"/ })
  await t.throwsAsync(fleet.generate('x', { image: '/nonexistent/cat.png' }), { ...code, message: /image is missing/ })
  t.is((await bull.getJobCounts('waiting')).waiting, 0)
})
