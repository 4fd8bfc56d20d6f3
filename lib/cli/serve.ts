// pg25 serve: the HTTP server (lib/server/) on one loaded model, until SIGTERM or SIGINT.
import { Pg25Error } from '../errors'
import { createServer, DEFAULT_MAX_PIXELS, type ServeOptions } from '../server'
import { checkLogFormat, formatAccessLog } from '../server/access-log'
import { corsOrigins } from '../server/cors'
import { int, num, parseFlags, str, type Flags, type Values } from './args'
import { chooseModel, MODEL_FLAGS, MODEL_HELP, openPipeline } from './model'
import { onStopSignals } from './stop-signals'
import { FLEET_HELP, openFleet } from './fleet'
import { LORA_HELP, loadLoRAFlags, parseLoRAFlags } from '../lora/flags'

export const SERVE_FLAGS: Flags = {
  ...MODEL_FLAGS,
  port: { type: 'string' },
  host: { type: 'string' },
  queue: { type: 'string' },
  'max-pixels': { type: 'string' },
  token: { type: 'string' },
  'headers-timeout': { type: 'string' },
  'request-timeout': { type: 'string' },
  'max-body': { type: 'string' },
  cors: { type: 'string', multiple: true },
  log: { type: 'string' },
  redis: { type: 'string' },
  'redis-queue': { type: 'string' },
  lora: { type: 'string', multiple: true },
  help: { type: 'boolean', short: 'h' }
}

export const SERVE_HELP = `Usage: pg25 serve [--port 8080] [--host 127.0.0.1] [--queue 8] [--max-pixels N] [--token T]
                  [--headers-timeout S] [--request-timeout S] [--max-body N] [--cors ORIGIN] [--log text]
                  [--model DIR|ID] [--device NAME] [--variant fp16]

POST /generate with a JSON body (Content-Type: application/json; {"prompt": "...", "seed": 1, ...}:
the generate() options) answers with a PNG, or with JSON ({"seed", "images": [base64 PNG]}) when the body
says "response": "json"; requests beyond --queue get 503; a client that disconnects cancels its run;
GET /health reports the queue. OpenAI's images API (/v1/images/generations, /v1/images/edits, /v1/models)
and A1111's (/sdapi/v1/txt2img, /sdapi/v1/img2img, ...) answer too, with the same limits and queue.
SIGTERM or SIGINT (Windows: Ctrl-Break or Ctrl-C) stops it: running requests are cancelled, then it exits.
      --port N             port to listen on (default 8080; 0 picks a free one)
      --host ADDR          address to listen on (default 127.0.0.1)
      --queue N            requests waiting or running at once (default 8)
      --max-pixels N       most output pixels (width x height x count) per request (default ${DEFAULT_MAX_PIXELS}); more get 413
      --token T            require "Authorization: Bearer T" to generate and on the APIs' routes (default:
                           $PG25_SERVER_TOKEN, else none)
      --headers-timeout S  seconds a client has to send its headers (default 10)
      --request-timeout S  seconds a client has to send its whole request (default 30); then 408
      --max-body N         largest request body in bytes (default 1048576); images sent as input count
      --cors ORIGIN        let browser pages from ORIGIN (e.g. http://localhost:3000) call the server;
                           repeat it for more (default: cross-origin requests are refused)
      --log FORMAT         an access log line per request on stdout: text (default), json or none
${MODEL_HELP}
${LORA_HELP} (requests set scales with "loras": {"NAME": 0.6})
${FLEET_HELP('redis-queue')}
`

/** The server's settings from its flags, all checked before the model loads. */
function settings (values: Values, lists: Record<string, string[]>): { port: number, host: string,
  options: ServeOptions & { queueLimit: number } } {
  const port = int('port', values.port) ?? 8080
  if (port < 0 || port > 65535) throw new Pg25Error('PG25_INVALID_ARGUMENT', `--port must be from 0 to 65535, got ${port}`)
  const queueLimit = int('queue', values.queue) ?? 8
  if (queueLimit < 1) throw new Pg25Error('PG25_INVALID_ARGUMENT', '--queue must be at least 1')
  const maxPixels = int('max-pixels', values['max-pixels'])
  if (maxPixels !== undefined && maxPixels < 64) throw new Pg25Error('PG25_INVALID_ARGUMENT', '--max-pixels must be at least 64')
  const maxBodyBytes = int('max-body', values['max-body'])
  if (maxBodyBytes !== undefined && maxBodyBytes < 1024) throw new Pg25Error('PG25_INVALID_ARGUMENT',
    '--max-body must be at least 1024 bytes')
  const seconds = (name: string): number | undefined => {
    const s = num(name, values[name])
    if (s !== undefined && !(s > 0 && s <= 3600)) throw new Pg25Error('PG25_INVALID_ARGUMENT', `--${name} must be from 0 to 3600 seconds`)
    return s === undefined ? undefined : Math.max(1, Math.round(s * 1000))
  }
  const token = str(values.token) ?? (process.env.PG25_SERVER_TOKEN || undefined)
  if (token === '') throw new Pg25Error('PG25_INVALID_ARGUMENT', '--token must not be empty')
  let cors: string[] | undefined
  try {
    cors = lists.cors === undefined ? undefined : [...corsOrigins(lists.cors)]
  } catch (err) {
    throw new Pg25Error('PG25_INVALID_ARGUMENT', `--${(err as Error).message}`)
  }
  const log = checkLogFormat(str(values.log) ?? 'text')
  const accessLog = log === 'none' ? undefined :
      (e: Parameters<NonNullable<ServeOptions['accessLog']>>[0]) => { process.stdout.write(`${formatAccessLog(e, log)}\n`) }
  const options = { queueLimit, maxPixels, maxBodyBytes, token, cors, accessLog, headersTimeoutMs: seconds('headers-timeout'),
    requestTimeoutMs: seconds('request-timeout') }
  return { port, host: str(values.host) ?? '127.0.0.1', options }
}

/** Runs `pg25 serve ...` until a stop signal (STOP_SIGNALS); resolves to the exit code. */
export async function serveCommand (argv: string[], elsewhere: Record<string, string> = {}): Promise<number> {
  const { values, positionals, lists } = parseFlags('pg25 serve', argv, SERVE_FLAGS, elsewhere)
  if (values.help === true) { process.stdout.write(SERVE_HELP); return 0 }
  if (positionals.length > 0) throw new Pg25Error('PG25_INVALID_ARGUMENT', `pg25 serve takes no prompt (got ${JSON.stringify(positionals[0])}); prompts come in the requests`)
  const { port, host, options } = settings(values, lists)
  const loras = await parseLoRAFlags(lists.lora ?? [])
  const pipe = await openFleet(values, 'redis-queue') ?? await openPipeline(chooseModel(values))
  await loadLoRAFlags(pipe, loras)
  const server = createServer(pipe, options)
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, host, resolve) })
  const addr = server.address()
  process.stderr.write(`pg25 serve: listening on http://${host}:${typeof addr === 'object' && addr ? addr.port :
    port} (${pipe.device}, queue ${options.queueLimit}${options.token ? ', token required' : ''}${options.cors ?
    `, CORS for ${options.cors.join(' ')}` : ''})\n`)
  let stopping = false
  let overdue: NodeJS.Timeout | undefined
  let off = (): void => {}
  await new Promise<void>(resolve => {
    off = onStopSignals(signal => {
      // A second signal means now; and whatever happens, the process ends within a bound.
      if (stopping) process.exit(130)
      stopping = true
      process.stderr.write(`pg25 serve: ${signal}: cancelling running requests and shutting down\n`)
      overdue = setTimeout(() => { process.stderr.write('pg25 serve: shutdown took too long; exiting\n'); process.exit(1) }, 15_000).unref()
      resolve()
    })
  })
  try {
    await server.shutdown(5000)
    await pipe.dispose()
  } finally {
    off()
    clearTimeout(overdue)
  }
  process.stderr.write('pg25 serve: stopped\n')
  return 0
}
