// The tiny model behind one or more createServer()s on 127.0.0.1, set up and torn down by ava hooks.
import type { TestFn } from 'ava'
import type { AddressInfo } from 'node:net'
import { Pipeline } from '../../lib'
import { createServer, type Pg25Server, type ServeOptions } from '../../lib/server'
import { TINY } from './helpers'

export interface Served {
  pipe: Pipeline
  servers: Pg25Server[]
  /** http://127.0.0.1:PORT of each server, in the order of the options */
  bases: string[]
}

export async function listen (s: Pg25Server): Promise<string> {
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`
}

/** Registers hooks that load the tiny model and start one server per entry of `options`; fills in the result before the tests run. */
export function serveTiny (test: TestFn, ...options: ServeOptions[]): Served {
  const served = { servers: [], bases: [] } as unknown as Served
  test.serial.before(async () => {
    served.pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
    for (const o of options) {
      const s = createServer(served.pipe, o)
      served.servers.push(s)
      served.bases.push(await listen(s))
    }
  })
  test.after.always(async () => {
    for (const s of served.servers) await s.shutdown(1000)
    await served.pipe?.dispose()
  })
  return served
}
