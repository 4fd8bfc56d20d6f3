// pg25 worker: one fleet worker process (one per GPU), taking generate jobs from a BullMQ queue on Redis.
import { Pg25Error } from '../errors'
import { startWorker } from '../fleet'
import { LORA_HELP, loadLoRAFlags, parseLoRAFlags } from '../lora/flags'
import { int, num, parseFlags, str, type Flags } from './args'
import { chooseModel, MODEL_FLAGS, MODEL_HELP, openPipeline } from './model'
import { onStopSignals } from './stop-signals'

export const WORKER_FLAGS: Flags = {
  ...MODEL_FLAGS,
  redis: { type: 'string' },
  queue: { type: 'string' },
  concurrency: { type: 'string' },
  'max-pixels': { type: 'string' },
  grace: { type: 'string' },
  'lock-duration': { type: 'string' },
  'stalled-interval': { type: 'string' },
  lora: { type: 'string', multiple: true },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' }
}

export const WORKER_HELP = `Usage: pg25 worker --model DIR|HUB_ID --redis redis://HOST:6379 [options]

Takes generate jobs (the JSON bodies pg25 serve accepts) from a queue on Redis and runs them on one
device. Run one worker per GPU, on as many machines as you like; submit with pg25 serve --redis,
pg25 "<prompt>" --redis, or the GenerateQueue API.

Options:
      --redis URL           redis:// or rediss:// URL (default: $PG25_REDIS)
      --queue NAME          queue name (default pg25)
      --concurrency N       jobs taken at once (default 1; one runs on the device at a time)
      --max-pixels N        most output pixels (width x height x count) per job (default 4194304)
      --grace S             on a stop signal, seconds the running job has to finish before it is
                            given back to the queue for another worker (default 60)
      --lock-duration S     seconds a job's lock lasts unrenewed: how soon a dead worker's job moves
                            on (default 60)
      --stalled-interval S  seconds between checks for jobs whose worker died (default 30)
${MODEL_HELP}
${LORA_HELP} (jobs set scales with "loras")
  -q, --quiet               no line per job
  -h, --help                this help

SIGTERM or SIGINT (Windows: Ctrl-Break or Ctrl-C): takes no new job, lets the running one finish (past
--grace, stops it and gives it back), then exits. A second signal gives the job back at once. Lost Redis
connections are retried.
`

const bad = (msg: string): never => { throw new Pg25Error('PG25_INVALID_ARGUMENT', msg) }

function atLeast (name: string, v: string | boolean | undefined, min: number): number | undefined {
  const n = int(name, v)
  if (n !== undefined && n < min) bad(`--${name} must be at least ${min}, got ${n}`)
  return n
}

function ms (name: string, v: string | boolean | undefined): number | undefined {
  const s = num(name, v)
  if (s !== undefined && !(s > 0 && s <= 86400)) bad(`--${name} must be from 0 to 86400 seconds, got ${s}`)
  return s === undefined ? undefined : Math.max(1, Math.round(s * 1000))
}

/** Runs `pg25 worker ...` until a stop signal (STOP_SIGNALS); resolves to the exit code. */
export async function workerCommand (argv: string[], elsewhere: Record<string, string> = {}): Promise<number> {
  const { values, positionals, lists } = parseFlags('pg25 worker', argv, WORKER_FLAGS, elsewhere)
  if (values.help === true) { process.stdout.write(WORKER_HELP); return 0 }
  if (positionals.length > 0) bad(`pg25 worker takes no prompt (got ${JSON.stringify(positionals[0])}); prompts come in the jobs`)
  const choice = chooseModel(values)
  if (choice.model === undefined) bad('pg25 worker needs --model (a model folder, Hub id or checkpoint) or $PG25_MODEL')
  const redis = str(values.redis) ?? (process.env.PG25_REDIS || undefined)
  if (redis === undefined) bad('pg25 worker needs --redis redis://HOST:6379 or $PG25_REDIS')
  const concurrency = atLeast('concurrency', values.concurrency, 1)
  const maxPixels = atLeast('max-pixels', values['max-pixels'], 64)
  const graceMs = ms('grace', values.grace) ?? 60_000
  const lockDurationMs = ms('lock-duration', values['lock-duration'])
  const stalledIntervalMs = ms('stalled-interval', values['stalled-interval'])
  const loras = await parseLoRAFlags(lists.lora ?? [])
  const say = (line: string): void => { process.stderr.write(`pg25 worker: ${line}\n`) }
  const log = values.quiet === true ? (line: string) => { if (!line.startsWith('job ')) say(line) } : say

  // Listening from the start: a signal while the model loads or the worker starts must not kill the process mid-way.
  let signalled: string | undefined
  let resolveStop = (_s: string): void => {}
  const stop = new Promise<string>(resolve => { resolveStop = resolve })
  let again = (): void => { process.exit(130) }
  let overdue: NodeJS.Timeout | undefined
  const off = onStopSignals(s => {
    if (signalled !== undefined) return again()
    signalled = s
    resolveStop(s)
  })
  try {
    const pipe = await openPipeline(choice)
    try {
      if (signalled !== undefined) { say(`${signalled} while loading: stopped`); return 0 }
      await loadLoRAFlags(pipe, loras)
      const worker = await startWorker(pipe, {
        redis: redis!, queue: str(values.queue), concurrency, maxPixels, lockDurationMs, stalledIntervalMs, log
      })
      const signal = await stop
      say(`${signal}: finishing ${worker.running} running job(s) (at most ${graceMs / 1000} s, then they go back to the queue)`)
      // A second signal gives the jobs back now; and whatever happens, the process ends within a bound.
      again = () => { void worker.close(0) }
      overdue = setTimeout(() => { say('shutdown took too long; exiting'); process.exit(1) }, graceMs + 20_000).unref()
      await worker.close(graceMs)
      say(`stopped (${worker.completed} done, ${worker.failed} failed)`)
      return 0
    } finally {
      await pipe.dispose()
    }
  } finally {
    off()
    clearTimeout(overdue)
  }
}
