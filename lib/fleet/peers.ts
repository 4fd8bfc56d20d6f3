// The fleet's optional peer dependencies, looked for before any fleet module loads them.
import { Pg25Error } from '../errors'

const missing = ['bullmq', 'ioredis'].filter(name => {
  try {
    require.resolve(name)
    return false
  } catch {
    return true
  }
})
if (missing.length > 0) {
  throw new Pg25Error('PG25_MISSING_DEPENDENCY', `@pg25/native/fleet needs ${missing.join(' and ')} (optional peer dependencies of @pg25/native): ` +
    `npm install ${missing.join(' ')}`)
}
