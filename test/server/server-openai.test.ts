// OpenAI's images API on createServer, driven by the real `openai` SDK against a live server on
// 127.0.0.1 (tiny model, 64x64, 2 steps): generations and edits give the images the pipeline gives
// for the same options; errors reach the SDK as its own error classes, in OpenAI's shape.
import test from 'ava'
import OpenAI, { toFile } from 'openai'
import sharp from 'sharp'
import { readPngText, type Pipeline } from '../../lib'
import { serveTiny } from '../support/served'

const served = serveTiny(test, { maxBodyBytes: 4 << 20 }, { token: 'sk-s3cret' })
let pipe: Pipeline
let base: string
let guardedBase: string
test.serial.before(() => {
  pipe = served.pipe
  base = `${served.bases[0]}/v1`
  guardedBase = `${served.bases[1]}/v1`
})

const client = (o: { baseURL?: string, apiKey?: string } = {}): OpenAI => new OpenAI({ baseURL: o.baseURL ?? base,
  apiKey: o.apiKey ?? 'unused', maxRetries: 0 })
const rgbOf = async (b64: string): Promise<{ width: number, height: number, data: Uint8Array }> => {
  const { data, info } = await sharp(Buffer.from(b64, 'base64')).raw().toBuffer({ resolveWithObject: true })
  return { width: info.width, height: info.height, data: new Uint8Array(data) }
}

/** A 64x64 picture with some structure: a gradient. */
async function picture (): Promise<Buffer> {
  const data = Buffer.alloc(64 * 64 * 3)
  for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) data.set([x * 4, y * 4, 128], (y * 64 + x) * 3)
  return await sharp(data, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer()
}

test.serial('images.generate: n images of the size asked, equal to the pipeline\'s; extras (seed, steps) as body fields; model echoed',
  async t => {
    const r = await client().images.generate({ model: 'dall-e-3', prompt: 'a cat', n: 2, size: '64x64', quality: 'hd', style: 'vivid',
      steps: 2, seed: 3 } as any)
    t.is(r.data?.length, 2)
    t.is((r as any).model, 'dall-e-3')
    t.is((r as any).seed, 3)
    t.is(r.size as string, '64x64')
    const direct = await pipe.generate('a cat', { width: 64, height: 64, steps: 2, seed: 3, count: 2 })
    for (let i = 0; i < 2; i++) {
      const img = await rgbOf(r.data![i].b64_json!)
      t.is(img.width, 64)
      t.deepEqual(img.data, direct.images[i].data, `image ${i}`)
    }
    t.regex(readPngText(Buffer.from(r.data![0].b64_json!, 'base64')).parameters, /Steps: 2, .*Seed: 3, Size: 64x64/)
  })

test.serial('images.generate refuses url responses, unknown fields (with our name for them) and bad sizes as BadRequestErrors', async t => {
  const c = client()
  const url = await t.throwsAsync(c.images.generate({ prompt: 'a cat', size: '64x64', response_format: 'url' }))
  t.true(url instanceof OpenAI.BadRequestError)
  t.is((url as any).status, 400)
  t.regex(url!.message, /"url" is not supported.*b64_json/)
  t.is((url as any).code, 'PG25_INVALID_ARGUMENT')
  t.is((url as any).type, 'invalid_request_error')
  const foreign = await t.throwsAsync(c.images.generate({ prompt: 'a cat', size: '64x64', negative_prompt: 'dogs' } as any))
  t.regex(foreign!.message, /unknown field "negative_prompt": this library calls it "negativePrompt"/)
  const size = await t.throwsAsync(c.images.generate({ prompt: 'a cat', size: 'big' as any }))
  t.regex(size!.message, /"size" must be "WIDTHxHEIGHT"/)
  const odd = await t.throwsAsync(c.images.generate({ prompt: 'a cat', size: '60x64' as any, steps: 1 } as any))
  t.regex(odd!.message, /width must be a multiple of 8/)
})

test.serial('images.edit with a mask: its transparent area is repainted, as a white mask repaints it in generate()', async t => {
  const image = await picture()
  // Transparent left half (repaint), opaque right half (keep).
  const alpha = Buffer.alloc(64 * 64 * 4)
  for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) alpha.set([0, 0, 0, x < 32 ? 0 : 255], (y * 64 + x) * 4)
  const mask = await sharp(alpha, { raw: { width: 64, height: 64, channels: 4 } }).png().toBuffer()
  const r = await client().images.edit({
    image: await toFile(image, 'image.png', { type: 'image/png' }),
    mask: await toFile(mask, 'mask.png', { type: 'image/png' }),
    prompt: 'a red armchair',
    steps: 2,
    seed: 9
  } as any)
  const white = Buffer.alloc(64 * 64 * 3)
  for (let y = 0; y < 64; y++) for (let x = 0; x < 32; x++) white.fill(255, (y * 64 + x) * 3, (y * 64 + x) * 3 + 3)
  const whiteMask = await sharp(white, { raw: { width: 64, height: 64, channels: 3 } }).png().toBuffer()
  const direct = await pipe.generate('a red armchair', { image, mask: whiteMask, steps: 2, seed: 9 })
  t.deepEqual((await rgbOf(r.data![0].b64_json!)).data, direct.images[0].data)
  // The other way round would repaint the right half instead: a different picture.
  const inverted = await pipe.generate('a red armchair',
    { image, mask: await sharp(white, { raw: { width: 64, height: 64, channels: 3 } }).negate().png().toBuffer(), steps: 2, seed: 9 })
  t.notDeepEqual((await rgbOf(r.data![0].b64_json!)).data, inverted.images[0].data)
})

test.serial('images.edit without a mask is image-to-image at strength 0.75 (or the strength given)', async t => {
  const image = await picture()
  const c = client()
  const r = await c.images.edit({ image: await toFile(image, 'image.png', { type: 'image/png' }), prompt: 'a watercolor', steps: 4,
    seed: 2 } as any)
  const direct = await pipe.generate('a watercolor', { image, strength: 0.75, steps: 4, seed: 2 })
  t.deepEqual((await rgbOf(r.data![0].b64_json!)).data, direct.images[0].data)
  const light = await c.images.edit({ image: await toFile(image, 'image.png', { type: 'image/png' }), prompt: 'a watercolor', steps: 4,
    seed: 2, strength: 0.5 } as any)
  t.deepEqual((await rgbOf(light.data![0].b64_json!)).data,
    (await pipe.generate('a watercolor', { image, strength: 0.5, steps: 4, seed: 2 })).images[0].data)
  const noAlpha = await t.throwsAsync(c.images.edit({ image: await toFile(image, 'a.png'), mask: await toFile(image, 'm.png'),
    prompt: 'x' }))
  t.true(noAlpha instanceof OpenAI.BadRequestError)
  t.regex(noAlpha!.message, /mask has no alpha channel/)
})

test.serial('the token: a wrong API key is an AuthenticationError, the right one works; models.list names the model', async t => {
  const wrong = await t.throwsAsync(client({ baseURL: guardedBase, apiKey: 'sk-wrong' }).images.generate({ prompt: 'x', size: '64x64' }))
  t.true(wrong instanceof OpenAI.AuthenticationError)
  t.is((wrong as any).type, 'authentication_error')
  t.is((wrong as any).code, 'UNAUTHORIZED')
  await t.throwsAsync(client({ baseURL: guardedBase, apiKey: 'sk-wrong' }).models.list(), { instanceOf: OpenAI.AuthenticationError })
  const right = client({ baseURL: guardedBase, apiKey: 'sk-s3cret' })
  const r = await right.images.generate({ prompt: 'x', size: '64x64', steps: 1 } as any)
  t.is(r.data?.length, 1)
  const models = []
  for await (const m of right.models.list()) models.push(m.id)
  t.deepEqual(models, ['tiny-pg25'])
})

test.serial('errors off the images routes come in OpenAI\'s shape too', async t => {
  const r = await fetch(`${base}/images/variations`, { method: 'POST' })
  t.is(r.status, 404)
  const j = await r.json() as any
  t.deepEqual(Object.keys(j.error).sort(), ['code', 'message', 'param', 'type'])
  t.is(j.error.code, 'NOT_FOUND')
  const plain = await fetch(`${base}/images/generations`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' })
  t.is(plain.status, 415)
  t.is((await plain.json() as any).error.code, 'UNSUPPORTED_MEDIA_TYPE')
})
