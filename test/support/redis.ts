// A real Redis for the fleet tests: Debian's redis-server on a free port of 127.0.0.1, in a temporary
// folder, stopped by its PID. restart() stops it and starts it again on the same port and folder
// (with `persist`, from its append-only file, as a production Redis with persistence comes back).
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

export interface TestRedis {
  url: string
  port: number
  /** stops the server (SIGTERM, then SIGKILL past 5 s) and starts it again on the same port */
  restart(): Promise<void>
  stop(): Promise<void>
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

/** One PING over a raw socket: true on +PONG. */
async function ping (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const s = net.connect(port, '127.0.0.1')
    const done = (ok: boolean): void => { s.destroy(); resolve(ok) }
    s.setTimeout(1000, () => done(false))
    s.once('error', () => done(false))
    s.once('data', d => done(d.toString().startsWith('+PONG')))
    s.write('PING\r\n')
  })
}

async function stopProcess (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

/** Starts redis-server (`persist`: with an fsync-always append-only file, so a restart keeps the data). */
export async function startRedis (options: { persist?: boolean } = {}): Promise<TestRedis> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pg25-redis-'))
  const port = await freePort()
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning',
    ...(options.persist === true ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no'])]
  let child: ChildProcess
  const launch = async (): Promise<void> => {
    child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] })
    const failed = new Promise<never>((_resolve, reject) => {
      child.once('error', err => reject((err as NodeJS.ErrnoException).code === 'ENOENT' ?
          new Error('redis-server is not installed: the fleet tests need it (Debian/Ubuntu: apt-get install redis-server; .ci/run installs it)') :
        err))
      child.once('exit', code => reject(new Error(`redis-server exited with ${code} on port ${port}`)))
    })
    failed.catch(() => {})
    for (let i = 0; i < 100; i++) {
      if (await Promise.race([ping(port), failed])) return
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    await stopProcess(child)
    throw new Error(`redis-server did not answer PING on port ${port} within 10 s`)
  }
  await launch()
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    restart: async () => {
      await stopProcess(child)
      await launch()
    },
    stop: async () => {
      await stopProcess(child)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
