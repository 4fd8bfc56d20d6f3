// npm run bench:rss: the server's resident memory over rounds of mixed requests on 127.0.0.1 (tiny
// model, CPU): images as PNG and JSON, image-to-image, refusals (400, 413, 415), clients that leave
// mid-run, and health checks, four clients at a time. Prints RSS and backend bytes after a warm-up
// round and after each measured round (GC first), to tell a leak from allocator settling.
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import sharp from 'sharp'
import { Pipeline } from '../lib'
import { createServer } from '../lib/server'

const REF = path.resolve(process.env.PG25_REFERENCE ?? path.join(__dirname, '..', '..', '..', 'shared', 'reference'))
const ROUNDS = Number(process.env.ROUNDS ?? 3)
const PER_ROUND = Number(process.env.PER_ROUND ?? 300)
const CLIENTS = 4
const MiB = 2 ** 20

async function main (): Promise<void> {
  const pipe = await Pipeline.fromPretrained(path.join(REF, 'tiny-pg25'), { device: 'cpu', onWarning: () => {} })
  const server = createServer(pipe, { queueLimit: 16, maxPixels: 256 * 256 })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const photo = (await sharp({ create: { width: 96, height: 80, channels: 3, background: 'orange' } }).jpeg().toBuffer()).toString('base64')
  const json = { 'content-type': 'application/json' }
  const post = async (body: unknown, headers: Record<string, string> = json, signal?: AbortSignal): Promise<void> => {
    try {
      const r = await fetch(`${base}/generate`, { method: 'POST', headers, body: JSON.stringify(body), signal })
      await r.arrayBuffer()
    } catch {} // the clients that leave
  }
  // One request of the mix, by its index.
  const request = async (i: number): Promise<void> => {
    const seed = i
    switch (i % 8) {
      case 0: return await post({ prompt: `a cat ${i}`, steps: 2, width: 64, height: 64, seed })
      case 1: return await post({ prompt: 'a dog', steps: 2, width: 64, height: 96, seed, count: 2, response: 'json' })
      case 2: return await post({ prompt: 'a watercolor', image: photo, strength: 0.5, steps: 4, seed })
      case 3: return await post({ prompt: 'x', width: 100 }) // 400
      case 4: return await post({ prompt: 'x', width: 512, height: 512 }) // 413
      case 5: return await post({ prompt: 'x' }, { 'content-type': 'text/plain' }) // 415
      case 6: {
        const ac = new AbortController()
        setTimeout(() => ac.abort(), 30)
        return await post({ prompt: 'a long one', steps: 50, width: 128, height: 128, seed }, json, ac.signal)
      }
      default: await (await fetch(`${base}/health`)).arrayBuffer()
    }
  }
  const round = async (): Promise<void> => {
    let next = 0
    await Promise.all(Array.from({ length: CLIENTS }, async () => { while (next < PER_ROUND) await request(next++) }))
  }
  const sample = (label: string): { rss: number, host: number } => {
    global.gc?.()
    const { rss, heapUsed, external } = process.memoryUsage()
    const m = { rss, host: pipe.memory().host }
    console.log(`${label.padEnd(12)} RSS ${(rss / MiB).toFixed(1)} MiB · JS heap ${(heapUsed / MiB).toFixed(1)} MiB · external ${(external / MiB).toFixed(1)} MiB · backend ${(m.host / MiB).toFixed(2)} MiB · libvips cache ${(sharp.cache().memory.current / MiB).toFixed(1)} MiB · ${JSON.stringify(server.stats())}`)
    return m
  }
  if (global.gc === undefined) console.log('(run with --expose-gc for GC before each sample)')
  await round()
  const first = sample('warm-up')
  let prev = first
  for (let r = 1; r <= ROUNDS; r++) {
    const t0 = Date.now()
    await round()
    const m = sample(`round ${r}`)
    console.log(`             ${((m.rss - prev.rss) / prev.rss * 100).toFixed(1)}% on the round before, ${((m.rss - first.rss) / first.rss * 100).toFixed(1)}% on the warm-up, ${((Date.now() - t0) / 1000).toFixed(0)} s`)
    prev = m
  }
  await server.shutdown(1000)
  await pipe.dispose()
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1 })
