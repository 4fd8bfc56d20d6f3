// npm run fuzz, Hub stage: a Hub on 127.0.0.1 that answers at random for FUZZ_SECONDS: listings that are
// junk, huge or plausible (names long, odd or missing; sizes wrong or absent), statuses from 200 to 503,
// headers that contradict the listing or announce 1e15 bytes, bodies cut, stalled, short, long or endless,
// redirects in loops. Every downloadFile must resolve with the right bytes or reject with a Pg25Error
// (tight timeouts and a 3 s deadline per file bound each trial), and the process must stay under 1 GiB.
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Pg25Error } from '../lib/errors'
import { downloadFile } from '../lib/hub/repo-file'

let state = 0x6d2b79f5
const rnd = (n: number): number => { state ^= state << 13; state ^= state >>> 17; state ^= state << 5; return (state >>> 0) % n }
const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)]

const DATA = Buffer.alloc(300_000, 7)
const SHA = createHash('sha256').update(DATA).digest('hex')
const COMMIT = 'c'.repeat(40)
const FILE = 'lora.safetensors'

/** One request's answer, drawn at random (the same draw for a whole trial's listing). */
function answer (req: http.IncomingMessage, res: http.ServerResponse, port: number): void {
  const url = new URL(req.url ?? '/', 'http://x')
  const status = pick([200, 200, 200, 200, 206, 302, 404, 416, 500, 503])
  if (url.pathname.startsWith('/api/models/')) {
    const siblings = pick([
      [{ rfilename: FILE, size: DATA.length, lfs: { sha256: SHA, size: DATA.length } }],
      [{ rfilename: FILE, lfs: { sha256: SHA } }],
      [{ rfilename: `${'x'.repeat(300)}.safetensors`, size: 1 }],
      [{ rfilename: '../escape.safetensors', size: 1 }],
      [{ rfilename: FILE, size: 1e15, lfs: { sha256: SHA, size: 1e15 } }],
      'junk'
    ])
    const body = pick([JSON.stringify({ sha: COMMIT, siblings }), '{"sha": 1}', '{', ' '.repeat(rnd(3) ? 10 : 40 * 2 ** 20)])
    if (rnd(8) === 0) { res.writeHead(status); res.end(); return }
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(body)
    return
  }
  const headers: Record<string, string> = {
    'x-repo-commit': pick([COMMIT, COMMIT, 'f'.repeat(40)]),
    'x-linked-etag': `"${pick([SHA, SHA, 'e'.repeat(64)])}"`
  }
  if (rnd(3)) headers['x-linked-size'] = String(pick([DATA.length, DATA.length, 1e15, 10]))
  if (status === 302) {
    res.writeHead(302, { ...headers, location: pick([`http://127.0.0.1:${port}/cdn`, url.pathname, '/loop']) })
    res.end()
    return
  }
  if (status !== 200 && status !== 206) { res.writeHead(status, headers); res.end(); return }
  const from = Number(/^bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1] ?? 0)
  const body = DATA.subarray(status === 206 ? from : 0)
  if (status === 206) headers['content-range'] = `bytes ${from}-${DATA.length - 1}/${DATA.length}`
  res.writeHead(status, headers)
  switch (rnd(5)) {
    case 0: res.write(body.subarray(0, rnd(body.length + 1)), () => res.socket?.destroy()); return // cut
    case 1: return // stall
    case 2: { // endless
      const more = (): void => { while (!res.destroyed && res.write(body.subarray(0, 65536))); if (!res.destroyed) res.once('drain', more) }
      more()
      return
    }
    default: res.end(body)
  }
}

/**
 * Runs trials while `more(runs)`; throws on the first broken invariant (and on a trial that takes over
 * `maxMs`, when given). The test suite runs a fixed number of them, npm run fuzz runs for FUZZ_SECONDS.
 */
export async function fuzzHub (more: (runs: number) => boolean, maxMs?: number): Promise<{ runs: number, fetched: number, peak: number }> {
  const saved = { ...process.env }
  const server = http.createServer((req, res) => { answer(req, res, (server.address() as AddressInfo).port) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const home = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-fuzz-hub-'))
  Object.assign(process.env, {
    HF_ENDPOINT: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    HF_HUB_ETAG_TIMEOUT: '0.3',
    HF_HUB_DOWNLOAD_TIMEOUT: '0.3',
    PG25_HUB_FILE_DEADLINE: '3'
  })
  let runs = 0
  let fetched = 0
  let peak = 0
  try {
    while (more(runs)) {
      process.env.HF_HOME = path.join(home, String(runs))
      const started = Date.now()
      try {
        const file = await downloadFile('fuzz/repo', rnd(2) ? FILE : undefined)
        if (!(await fs.readFile(file)).equals(DATA)) throw new Error(`run ${runs}: downloadFile returned other bytes`)
        fetched++
      } catch (err) {
        if (!(err instanceof Pg25Error)) throw new Error(`run ${runs}: not a Pg25Error: ${(err as Error).stack ?? String(err)}`)
      }
      // A file's attempts each wait at most a timeout, within its 3 s deadline, with the listing's before them.
      if (maxMs !== undefined && Date.now() - started > maxMs) throw new Error(`run ${runs} took ${Date.now() - started} ms`)
      peak = Math.max(peak, process.memoryUsage().rss)
      if (peak > 2 ** 30) throw new Error(`run ${runs}: RSS reached ${peak} bytes`)
      await fs.rm(process.env.HF_HOME, { recursive: true, force: true })
      runs++
    }
  } finally {
    server.closeAllConnections()
    server.close()
    await fs.rm(home, { recursive: true, force: true })
    for (const k of ['HF_ENDPOINT', 'HF_HUB_ETAG_TIMEOUT', 'HF_HUB_DOWNLOAD_TIMEOUT', 'PG25_HUB_FILE_DEADLINE', 'HF_HOME']) {
      if (saved[k] === undefined) delete process.env[k]
      else process.env[k] = saved[k]
    }
  }
  return { runs, fetched, peak }
}

if (require.main === module) {
  const end = Date.now() + Number(process.env.FUZZ_SECONDS ?? 180) * 1000
  fuzzHub(() => Date.now() < end, 15_000).then(({ runs, fetched, peak }) => {
    console.log(`fuzz: hub stat::number_of_executed_units: ${runs} (${fetched} fetched, peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB)`)
  }, err => { console.error(`fuzz: hub FOUND A FAILURE: ${(err as Error).message}`); process.exitCode = 1 })
}
