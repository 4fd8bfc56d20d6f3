import test from 'ava'
import { Pg25Error } from '../../lib/errors'
import { readJobData, toJobData } from '../../lib/fleet/job'
import { MAX_BASE64_CHARS, parseRequest } from '../../lib/server/request'

// Base64 images in server requests and fleet jobs: checked without a regular expression (one over
// megabytes of text overflowed its backtracking stack: a raw RangeError) and capped before decoding.

test('base64 images of many megabytes are checked in one pass, and past 64 MiB refused unread', async t => {
  const bytes = Buffer.alloc(12 * 2 ** 20, 0xa7) // 16 MiB of base64: a regular expression's backtracking stack overflowed near 8
  const b64 = bytes.toString('base64')
  t.true((parseRequest(JSON.stringify({ prompt: 'x', image: b64 })).options.image as Buffer).equals(bytes))
  t.true((readJobData({ prompt: 'x', mask: b64 }).request.options.mask as Buffer).equals(bytes))
  t.is((await toJobData('x', { image: bytes })).image, b64)
  for (const bad of [`${b64.slice(0, -4)}AB=A`, `${b64.slice(0, -1)}`, `${b64.slice(0, -2)}-A`]) {
    const message = '"image" must be a non-empty base64 (standard alphabet) PNG, JPEG or WebP'
    const body = JSON.stringify({ prompt: 'x', image: bad })
    t.throws(() => parseRequest(body), { instanceOf: Pg25Error, code: 'PG25_INVALID_ARGUMENT', message })
  }
  const huge = 'A'.repeat(MAX_BASE64_CHARS + 4)
  const message = /"image" is 89478492 base64 characters; images up to 67108864 bytes \(89478488 characters\) are accepted/
  t.throws(() => parseRequest(JSON.stringify({ prompt: 'x', image: huge })), { code: 'PG25_INVALID_ARGUMENT', message })
})
