import test from 'ava'
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { Pipeline, type LoadProgress } from '../../lib'
import { checkLoadOptions, closest } from '../../lib/options'
import { TINY } from '../support/helpers'

// Strict options: unknown keys are refused with our name for them (diffusers' and transformers.js'
// names, misspellings of ours), wrong types name the type, and load progress counts bytes.
let pipe: Pipeline
test.before(async () => { pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' }) })
test.after.always(async () => { await pipe?.dispose() })

const refuses = async (t: any, p: Promise<unknown>, re: RegExp): Promise<void> => {
  const e = await t.throwsAsync(p) as any
  t.is(e.code, 'PG25_INVALID_ARGUMENT', e.message)
  t.regex(e.message, re)
}

test('generate refuses diffusers\' option names, naming ours', async t => {
  const cases: Array<[string, string]> = [
    ['num_inference_steps', 'steps'], ['guidance_scale', 'guidanceScale'], ['negative_prompt', 'negativePrompt'],
    ['negative_prompt_2', 'negativePrompt2'], ['prompt_2', 'prompt2'], ['num_images_per_prompt', 'count'], ['generator', 'seed'],
    ['output_type', 'outputType'], ['callback_on_step_end', 'onStep'], ['original_size', 'originalSize'],
    ['target_size', 'targetSize'], ['crops_coords_top_left', 'cropTopLeft'], ['mask_image', 'mask']
  ]
  for (const [theirs, ours] of cases) {
    await refuses(t, pipe.generate('x', { [theirs]: 2 } as any), new RegExp(`^generate: unknown option "${theirs}": this library calls it "${ours}"$`))
  }
})

test('misspellings of our own keys get a "did you mean"; other unknown keys list the options', async t => {
  for (const [typo, ours] of [['stpes', 'steps'], ['Steps', 'steps'], ['guidancescale', 'guidanceScale'], ['negativeprompt', 'negativePrompt'], ['seeed', 'seed'], ['widht', 'width'], ['schedular', 'scheduler']]) {
    await refuses(t, pipe.generate('x', { [typo]: 1 } as any), new RegExp(`unknown option "${typo}"; did you mean "${ours}"\\?$`))
  }
  await refuses(t, pipe.generate('x', { cross_attention_kwargs: { scale: 0.5 } } as any), /unknown option "cross_attention_kwargs": a LoRA's scale is set here by loadLoRA/)
  await refuses(t, pipe.generate('x', { frobnicate: 1 } as any), /unknown option "frobnicate" \(the options are negativePrompt, prompt2, .*steps, guidanceScale/)
  // Unknown keys are refused even when their value is undefined, as a typo with any value is a typo.
  await refuses(t, pipe.generate('x', { num_inference_steps: undefined } as any), /"num_inference_steps"/)
})

test('load options: foreign names, typos and "not needed" are refused before anything is read', async t => {
  const missing = path.join(TINY, 'no-such-model')
  // A model path that does not exist: the options are refused first (PG25_INVALID_ARGUMENT, not PG25_NOT_FOUND).
  await refuses(t, Pipeline.fromPretrained(missing, { devcie: 'cpu' } as any), /^fromPretrained: unknown option "devcie"; did you mean "device"\?$/)
  await refuses(t, Pipeline.fromPretrained(missing, { torch_dtype: 'float16' } as any), /unknown option "torch_dtype": this library calls it "precision"/)
  await refuses(t, Pipeline.fromPretrained(missing, { dtype: 'fp16' } as any), /unknown option "dtype": this library calls it "precision"/)
  await refuses(t, Pipeline.fromPretrained(missing, { device_map: 'auto' } as any), /"device_map": this library calls it "device"/)
  await refuses(t, Pipeline.fromPretrained(missing, { use_auth_token: 'x' } as any), /"use_auth_token": this library calls it "token"/)
  await refuses(t, Pipeline.fromPretrained(missing, { progress_callback: () => {} } as any), /"progress_callback": this library calls it "onProgress"/)
  await refuses(t, Pipeline.fromPretrained(missing, { local_files_only: true } as any), /HF_HUB_OFFLINE=1/)
  await refuses(t, Pipeline.fromPretrained(missing, { use_safetensors: true } as any), /only safetensors files are read/)
  await refuses(t, Pipeline.fromSingleFile(missing, { config: TINY, num_inference_steps: 2 } as any), /^fromSingleFile: unknown option "num_inference_steps"/)
  await refuses(t, Pipeline.fromSingleFile(missing, { config: TINY, cofnig: TINY } as any), /did you mean "config"\?/)
  // The Hub options are known keys (their meaning is the Hub loader's).
  t.notThrows(() => checkLoadOptions('fromPretrained', { revision: 'main', token: 'hf_x', variant: 'fp16', device: 'cuda:1', memoryLimit: 1e9, modelName: 'm' }))
  t.notThrows(() => checkLoadOptions('fromPretrained', { device: null, variant: undefined }))
})

test('type errors name the type of what was given', async t => {
  await refuses(t, pipe.generate('x', { steps: '3' } as any), /^steps must be an integer from 1 to 1000, got "3" \(a string\)$/)
  await refuses(t, pipe.generate('x', { guidanceScale: '3' } as any), /guidanceScale must be a number from 0 to 100, got "3" \(a string\)/)
  await refuses(t, pipe.generate('x', { seed: true } as any), /seed must be a non-negative safe integer, got true \(a boolean\)/)
  await refuses(t, pipe.generate('x', { width: [64] } as any), /width must be a multiple of 8 between 8 and 8192, got \[64\] \(an array\)/)
  await refuses(t, pipe.generate('x', { negativePrompt: { text: 'a' } } as any), /negativePrompt must be a string, got \{"text":"a"\} \(an object\)/)
  await refuses(t, pipe.generate('x', { onStep: 'log' } as any), /onStep must be a function, got "log" \(a string\)/)
  await refuses(t, pipe.generate('x', { count: 2.5 }), /count must be an integer from 1 to 64, got 2\.5$/)
  await refuses(t, pipe.generate('x', 5 as any), /generate: options must be an object, got 5/)
  await refuses(t, pipe.generate(3 as any), /prompt must be a string, got 3/)
  await refuses(t, Pipeline.fromPretrained(TINY, { device: 3 } as any), /device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 3/)
  await refuses(t, Pipeline.fromPretrained(TINY, { onProgress: 'bar' } as any), /onProgress must be a function, got "bar" \(a string\)/)
  await refuses(t, Pipeline.fromPretrained(TINY, { memoryLimit: '8G' } as any), /memoryLimit must be a positive number of bytes, got "8G" \(a string\)/)
  await refuses(t, Pipeline.fromPretrained(TINY, 'cpu' as any), /fromPretrained: options must be an object, got "cpu" \(a string\)/)
})

test('closest: case and underscores ignored, one edit for short words, two for long ones', t => {
  const keys = ['device', 'variant', 'steps', 'seed', 'count']
  t.is(closest('devcie', keys), 'device')
  t.is(closest('DEVICE', keys), 'device')
  t.is(closest('varaint', keys), 'variant')
  t.is(closest('sed', keys), 'seed')
  t.is(closest('xyz', keys), undefined)
  t.is(closest('stop', keys), undefined) // two edits from "steps": too far for a short word
})

/** The bytes of the tensors the pipeline loads, from the safetensors headers: all of each file but the VAE's encoder. */
function expectedBytes (): Map<string, number> {
  const out = new Map<string, number>()
  for (const c of ['text_encoder', 'text_encoder_2', 'unet', 'vae']) {
    const dir = path.join(TINY, c)
    let sum = 0
    for (const f of readdirSync(dir).filter(n => n.endsWith('.safetensors'))) {
      const buf = readFileSync(path.join(dir, f))
      const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString('utf8')) as Record<string, { data_offsets: [number, number] }>
      for (const [name, e] of Object.entries(header)) {
        if (name !== '__metadata__' && !(c === 'vae' && /^(encoder|quant_conv)\./.test(name))) sum += e.data_offsets[1] - e.data_offsets[0]
      }
    }
    out.set(c, sum)
  }
  return out
}

test('load progress: bytes grow monotonically through every component and end at totalBytes', async t => {
  const events: LoadProgress[] = []
  const p = await Pipeline.fromPretrained(TINY, { device: 'cpu', onProgress: e => events.push(e) })
  await p.dispose()
  const expected = expectedBytes()
  const total = [...expected.values()].reduce((a, b) => a + b, 0)
  t.true(events.every(e => e.phase === 'load' && e.totalBytes === total))
  for (let i = 1; i < events.length; i++) t.true(events[i].loadedBytes >= events[i - 1].loadedBytes, `event ${i}`)
  t.is(events[0].loadedBytes, 0)
  t.is(events.at(-1)!.loadedBytes, total)
  // In hundredths of the total, not per component: the UNet (most of the bytes) reports many steps in between.
  const unet = events.filter(e => e.component === 'unet')
  t.true(unet.length > 20, `${unet.length} UNet events`)
  // Each component ends where the header bytes of the components so far do.
  let sum = 0
  for (const [c, bytes] of expected) {
    sum += bytes
    t.is(events.filter(e => e.component === c).at(-1)!.loadedBytes, sum, c)
  }
})

test('an onProgress that throws fails the load with its error, and no later event arrives', async t => {
  let calls = 0
  let after = 0
  const e = await t.throwsAsync(Pipeline.fromPretrained(TINY, {
    device: 'cpu',
    onProgress: p => {
      calls++
      if (calls > 1) after++
      if (p.loadedBytes > 0) throw new Error('boom from onProgress')
    }
  }))
  t.is(e!.message, 'boom from onProgress')
  t.is(after, 1)
})
