// --redis for `pg25 serve` and `pg25 "<prompt>"`: the requests go to a fleet of `pg25 worker`
// processes through a queue on Redis instead of to a model loaded here.
import { Pg25Error } from '../errors'
import type { GenerateQueue } from '../fleet/queue'
import { str, type Values } from './args'
import type { Interrupt } from './interrupt'
import { MODEL_FLAGS } from './model'

export const FLEET_HELP = (queueFlag: string): string => `      --redis URL          hand the work to a fleet of pg25 worker processes through a queue on Redis
                           (a redis:// or rediss:// URL) instead of loading a model here (so no model flags)
      --${(queueFlag + ' NAME').padEnd(19)}the fleet's queue name (default pg25)`

/**
 * The fleet's client when --redis is given (model flags refused: the workers load the model), else
 * undefined. With `interrupt`, SIGINT or SIGTERM closes it, which cancels the jobs it waits for (a
 * Ctrl-C must not leave a GPU working for nobody).
 */
export async function openFleet (values: Values, queueFlag: string, options: { interrupt?: Interrupt } = {}):
Promise<GenerateQueue | undefined> {
  const redis = str(values.redis)
  if (redis === undefined) {
    if (values[queueFlag] !== undefined) throw new Pg25Error('PG25_INVALID_ARGUMENT', `--${queueFlag} goes with --redis`)
    return undefined
  }
  // LoRAs too are the workers' to load (pg25 worker --lora); requests pick them by name.
  for (const f of [...Object.keys(MODEL_FLAGS), 'lora']) {
    if (values[f] !== undefined) throw new Pg25Error('PG25_INVALID_ARGUMENT', `--${f} does not apply with --redis: the fleet's workers load the model (pg25 worker --model ...)`)
  }
  const { GenerateQueue } = await import('../fleet') // names bullmq or ioredis if missing
  const fleet = new GenerateQueue({ redis, queue: str(values[queueFlag]), log: line => process.stderr.write(`pg25: ${line}\n`) })
  options.interrupt?.onStop(async () => { process.stderr.write('pg25: interrupted: cancelling the job\n'); await fleet.close() })
  return fleet
}
