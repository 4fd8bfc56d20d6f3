// Worker processes for the fleet tests: `pg25 worker` (lib/cli/worker.ts) in a child process on the
// tiny model, its stderr lines kept so tests can see which worker started and finished which job.
import { spawn, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { TINY } from './helpers'

export interface WorkerProcess {
  child: ChildProcess
  lines: string[]
  /** resolves with the exit code (or the signal's name) */
  exited: Promise<number | string>
  /** resolves with the first stderr line matching `re`, from the start; rejects after `ms` */
  waitFor(re: RegExp, ms?: number): Promise<string>
  /** ids of the jobs this worker finished */
  done(): string[]
  /** ends the process (SIGKILL unless told) if it still runs, and waits for it */
  stop(signal?: NodeJS.Signals): Promise<void>
}

const COMMAND = path.join(__dirname, '..', '..', 'lib', 'cli', 'worker.js')

export async function spawnWorker (redisUrl: string, args: string[] = []): Promise<WorkerProcess> {
  const script = `require(${JSON.stringify(COMMAND)}).workerCommand(process.argv.slice(1)).then(c => { process.exitCode = c }, e => { process.stderr.write('pg25: ' + e.message + ' (' + e.code + ')\\n'); process.exitCode = 1 })`
  const child = spawn(process.execPath, ['-e', script, '--', '--model', TINY, '--device', 'cpu', '--redis', redisUrl, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  const lines: string[] = []
  const watchers: Array<() => void> = []
  let rest = ''
  child.stderr!.on('data', (d: Buffer) => {
    const parts = (rest + d.toString()).split('\n')
    rest = parts.pop()!
    lines.push(...parts)
    for (const w of [...watchers]) w()
  })
  const exited = new Promise<number | string>(resolve => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)))
  const waitFor = async (re: RegExp, ms = 30_000): Promise<string> => await new Promise((resolve, reject) => {
    const look = (): void => {
      const hit = lines.find(l => re.test(l))
      if (hit === undefined) return
      cleanup()
      resolve(hit)
    }
    const timer = setTimeout(() => { cleanup(); reject(new Error(`no line like ${re} within ${ms} ms; stderr:\n${lines.join('\n')}`)) }, ms)
    const cleanup = (): void => { clearTimeout(timer); watchers.splice(watchers.indexOf(look), 1) }
    watchers.push(look)
    look()
  })
  const w: WorkerProcess = {
    child,
    lines,
    exited,
    waitFor,
    done: () => lines.flatMap(l => /job (\S+): done/.exec(l)?.[1] ?? []),
    stop: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      await exited
    }
  }
  try {
    await Promise.race([waitFor(/: ready$/), exited.then(code => { throw new Error(`worker exited (${code}) before it was ready:\n${lines.join('\n')}`) })])
  } catch (err) {
    await w.stop()
    throw err
  }
  return w
}
