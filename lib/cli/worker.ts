// pg25 worker: one fleet worker process (one per GPU), taking generate jobs from a BullMQ queue on Redis.
import { parseArgs } from 'node:util'
import { Pg25Error } from '../errors'
import { startWorker } from '../fleet/worker'
import { Pipeline } from '../pipeline'
import type { Device } from '../runtime'

export const WORKER_HELP = `Usage: pg25 worker --model DIR|HUB_ID --redis redis://HOST:6379 [options]

Takes generate jobs (the JSON bodies pg25 serve accepts) from a queue on Redis and runs them on one
device. Run one worker per GPU, on as many machines as you like; submit with pg25 serve --redis,
pg25 "<prompt>" --redis, or the GenerateQueue API.

Options:
  -m, --model DIR|ID        diffusers-format model directory or Hub id (default: $PG25_MODEL)
      --redis URL           redis:// or rediss:// URL (default: $PG25_REDIS)
      --queue NAME          queue name (default pg25)
      --device NAME         cpu, cuda, cuda:N (GPU N) or auto (default)
      --variant fp16        load the fp16 weight files
      --concurrency N       jobs taken at once (default 1; one runs on the device at a time)
      --max-pixels N        most output pixels (width x height x count) per job (default 4194304)
      --grace S             on SIGTERM, seconds the running job has to finish before it is
                            given back to the queue for another worker (default 60)
      --lock-duration S     seconds a job's lock lasts unrenewed: how soon a dead worker's job moves
                            on (default 60)
      --stalled-interval S  seconds between checks for jobs whose worker died (default 30)
  -q, --quiet               no line per job
  -h, --help                this help

SIGTERM or SIGINT: takes no new job, lets the running one finish (past --grace, stops it and gives it
back), then exits. A second signal gives the job back at once. Lost Redis connections are retried.
`

function count (name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < min) throw new Pg25Error('PG25_INVALID_ARGUMENT', `--${name} must be an integer of at least ${min}, got ${JSON.stringify(v)}`)
  return n
}

function ms (name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const s = Number(v)
  if (!/^(\d+\.?\d*|\.\d+)$/.test(v) || !(s > 0 && s <= 86400)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `--${name} must be a number of seconds from 0 to 86400, got ${JSON.stringify(v)}`)
  return Math.max(1, Math.round(s * 1000))
}

/** Runs `pg25 worker ...` until SIGTERM or SIGINT; resolves to the exit code. */
export async function workerCommand (argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: 'string', short: 'm' },
      redis: { type: 'string' },
      queue: { type: 'string' },
      device: { type: 'string' },
      variant: { type: 'string' },
      concurrency: { type: 'string' },
      'max-pixels': { type: 'string' },
      grace: { type: 'string' },
      'lock-duration': { type: 'string' },
      'stalled-interval': { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' }
    }
  })
  if (values.help === true) { process.stdout.write(WORKER_HELP); return 0 }
  if (positionals.length > 0) throw new Pg25Error('PG25_INVALID_ARGUMENT', `pg25 worker takes no positional arguments, got ${JSON.stringify(positionals[0])} (see pg25 worker --help)`)
  const model = values.model ?? (process.env.PG25_MODEL || undefined)
  if (model === undefined || model === '') throw new Pg25Error('PG25_INVALID_ARGUMENT', 'pg25 worker needs --model (a model directory or Hub id) or $PG25_MODEL')
  const redis = values.redis ?? (process.env.PG25_REDIS || undefined)
  if (redis === undefined) throw new Pg25Error('PG25_INVALID_ARGUMENT', 'pg25 worker needs --redis redis://HOST:6379 or $PG25_REDIS')
  if (values.variant !== undefined && values.variant !== 'fp16') throw new Pg25Error('PG25_INVALID_ARGUMENT', '--variant must be fp16')
  const concurrency = count('concurrency', values.concurrency, 1)
  const maxPixels = count('max-pixels', values['max-pixels'], 64)
  const graceMs = ms('grace', values.grace) ?? 60_000
  const lockDurationMs = ms('lock-duration', values['lock-duration'])
  const stalledIntervalMs = ms('stalled-interval', values['stalled-interval'])
  const say = (line: string): void => { process.stderr.write(`pg25 worker: ${line}\n`) }
  const log = values.quiet === true ? (line: string) => { if (!line.startsWith('job ')) say(line) } : say

  // Listening from the start: a signal while the model loads or the worker starts must not kill the process mid-way.
  let signalled: string | undefined
  const stop = new Promise<string>(resolve => {
    const on = (s: string): void => { signalled ??= s; resolve(s) }
    process.once('SIGTERM', () => on('SIGTERM'))
    process.once('SIGINT', () => on('SIGINT'))
  })
  const pipe = await Pipeline.fromPretrained(model, {
    device: (values.device ?? 'auto') as Device,
    variant: values.variant as 'fp16' | undefined,
    onWarning: say
  })
  try {
    if (signalled !== undefined) { say(`${signalled} while loading: stopped`); return 0 }
    const worker = await startWorker(pipe, { redis, queue: values.queue, concurrency, maxPixels, lockDurationMs, stalledIntervalMs, log })
    const signal = await stop
    say(`${signal}: finishing ${worker.running} running job(s) (at most ${graceMs / 1000} s, then they go back to the queue)`)
    // A second signal gives the jobs back now; and whatever happens, the process ends within a bound.
    for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => { void worker.close(0) })
    setTimeout(() => { say('shutdown took too long; exiting'); process.exit(1) }, graceMs + 20_000).unref()
    await worker.close(graceMs)
    say(`stopped (${worker.completed} done, ${worker.failed} failed)`)
    return 0
  } finally {
    await pipe.dispose()
  }
}
