// The fleet when things go wrong: a worker SIGKILLed during a job, a worker told to stop (SIGTERM),
// Redis restarted mid-run (with persistence: the fleet carries on; without: the lost job is reported
// and the fleet carries on with new ones). Workers are `pg25 worker` processes; Redis is real.
import test from 'ava'
import { AbortError, Pipeline, type GenerateOptions, type GenerateResult } from '../../lib'
import { GenerateQueue } from '../../lib/fleet'
import { spawnWorker, type WorkerProcess } from '../support/fleet-procs'
import { TINY } from '../support/helpers'
import { startRedis, type TestRedis } from '../support/redis'

let pipe: Pipeline
test.before(async () => {
  pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
})
test.after.always(async () => {
  await pipe?.dispose()
})

/** A Redis, a GenerateQueue on it and the workers a test starts, all ended in its teardown. */
async function setup (t: any, persist = false): Promise<{ redis: TestRedis, fleet: GenerateQueue, workers: WorkerProcess[] }> {
  const redis = await startRedis({ persist })
  const fleet = new GenerateQueue({ redis: redis.url, checkMs: 300 })
  const workers: WorkerProcess[] = []
  t.teardown(async () => {
    await fleet.close()
    await Promise.all(workers.map(async w => await w.stop()))
    await redis.stop()
  })
  return { redis, fleet, workers }
}

async function equalsLocal (r: GenerateResult, prompt: string, o: GenerateOptions): Promise<boolean> {
  const local = await pipe.generate(prompt, o)
  return r.seed === local.seed && r.images.length === local.images.length &&
    r.images.every((img, i) => Buffer.from(img.data).equals(Buffer.from(local.images[i].data)))
}

/** Resolves when `steps` steps of a job have been reported through `onStep`. */
function stepsSeen (steps: number): { onStep: () => void, reached: Promise<void> } {
  let seen = 0
  let reach!: () => void
  const reached = new Promise<void>(resolve => { reach = resolve })
  return { onStep: () => { if (++seen === steps) reach() }, reached }
}

const LONG = { width: 64, height: 64, steps: 80, seed: 11 }

test.serial('a worker SIGKILLed during a job: another worker finishes it', async t => {
  const { redis, fleet, workers } = await setup(t)
  // Short locks, so the dead worker's job moves on within seconds (production keeps 60 s).
  const fast = ['--lock-duration', '5', '--stalled-interval', '1']
  workers.push(...await Promise.all([0, 1].map(async () => await spawnWorker(redis.url, fast))))
  const seen = stepsSeen(2)
  const pending = fleet.generate('killed mid-run', { ...LONG, onStep: seen.onStep })
  await seen.reached
  const started = await Promise.race(workers.map(async w => { await w.waitFor(/ started$/); return w }))
  const runner = started
  const other = workers.find(w => w !== runner)!
  const jobId = / job (\S+): started$/.exec(runner.lines.find(l => / started$/.test(l))!)![1]
  await runner.stop('SIGKILL')
  const r = await pending
  t.true(await equalsLocal(r, 'killed mid-run', LONG))
  t.deepEqual(other.done(), [jobId], 'the other worker finished the job')
  t.deepEqual(runner.done(), [])
})

test.serial('SIGTERM lets the running job finish, then the worker exits', async t => {
  const { redis, fleet, workers } = await setup(t)
  const w = await spawnWorker(redis.url)
  workers.push(w)
  const seen = stepsSeen(2)
  const pending = fleet.generate('finish me', { ...LONG, onStep: seen.onStep })
  await seen.reached
  w.child.kill('SIGTERM')
  t.true(await equalsLocal(await pending, 'finish me', LONG))
  t.is(await w.exited, 0)
  t.true(w.lines.some(l => /stopped \(1 done, 0 failed\)/.test(l)), w.lines.join('\n'))
})

test.serial('SIGTERM past --grace gives the job back; another worker runs it', async t => {
  const { redis, fleet, workers } = await setup(t)
  const leaving = await spawnWorker(redis.url, ['--grace', '0.3'])
  workers.push(leaving)
  const seen = stepsSeen(2)
  const pending = fleet.generate('give me back', { ...LONG, steps: 200, onStep: seen.onStep })
  await seen.reached
  leaving.child.kill('SIGTERM')
  // Started only now, so the job waits for it in the queue once it is given back.
  const spare = await spawnWorker(redis.url)
  workers.push(spare)
  const r = await pending
  t.true(await equalsLocal(r, 'give me back', { ...LONG, steps: 200 }))
  t.is(await leaving.exited, 0)
  t.true(leaving.lines.some(l => /given back to the queue/.test(l)), leaving.lines.join('\n'))
  t.is(spare.done().length, 1)
})

test.serial('Redis restarted mid-run (with persistence): every job still completes, and new ones too', async t => {
  const { redis, fleet, workers } = await setup(t, true)
  workers.push(...await Promise.all([0, 1].map(async () => await spawnWorker(redis.url))))
  const jobs = Array.from({ length: 12 }, (_, i) => ({ prompt: `restart ${i}`, o: { width: 64, height: 64, steps: 12, seed: i } }))
  const pending = jobs.map(async j => await fleet.generate(j.prompt, j.o))
  await Promise.race(workers.map(async w => await w.waitFor(/: done in/)))
  await redis.restart()
  const results = await Promise.all(pending)
  for (let i = 0; i < jobs.length; i++) t.true(await equalsLocal(results[i], jobs[i].prompt, jobs[i].o), `job ${i}`)
  t.true(await equalsLocal(await fleet.generate('after', jobs[0].o), 'after', jobs[0].o))
  for (const w of workers) t.is(w.child.exitCode, null, 'workers outlive the restart')
})

test.serial('Redis restarted empty mid-run: the lost job is reported and stopped, and the fleet carries on', async t => {
  const { redis, fleet, workers } = await setup(t)
  // A short lock, renewed often: the worker soon learns that its job is gone.
  const w = await spawnWorker(redis.url, ['--lock-duration', '2'])
  workers.push(w)
  const seen = stepsSeen(2)
  const lost = fleet.generate('lost', { ...LONG, steps: 400, onStep: seen.onStep })
  await seen.reached
  await redis.restart()
  const err = await t.throwsAsync(lost)
  t.is((err as any).code, 'PG25_QUEUE')
  t.regex(err!.message, /gone from Redis/)
  const o = { width: 64, height: 64, steps: 3, seed: 2 }
  t.true(await equalsLocal(await fleet.generate('carry on', o), 'carry on', o))
  t.true(w.lines.some(l => /stopped: lost: the job is gone from Redis/.test(l)), w.lines.join('\n'))
})

test.serial('with Redis down, health says so and a call with a signal still ends', async t => {
  const redis = await startRedis()
  const fleet = new GenerateQueue({ redis: redis.url })
  t.teardown(async () => { await fleet.close(); await redis.stop() })
  t.is((await fleet.health() as any).fleet.redis, 'ok')
  const url = redis.url
  await redis.stop()
  t.like(await fleet.health(), { fleet: { redis: 'unreachable', pending: 0 } })
  await t.throwsAsync(fleet.generate('x', { steps: 1, signal: AbortSignal.timeout(300) }), { instanceOf: AbortError })
  // A client made while Redis is down waits for it to connect, and a signal ends that wait too.
  const late = new GenerateQueue({ redis: url })
  t.teardown(async () => { await late.close() })
  await t.throwsAsync(late.generate('x', { steps: 1, signal: AbortSignal.timeout(300) }), { instanceOf: AbortError })
})
