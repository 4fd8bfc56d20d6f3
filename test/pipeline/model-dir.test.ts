import test from 'ava'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Pipeline, Pg25Error, readModelIndex, resolveWeightFiles } from '../../lib'
import { loadNative, type ComponentSpec, type WeightFile } from '../../lib/native'
import { fromNative } from '../../lib/errors'
import { serializeSafetensors, type TensorToWrite } from '../../lib/io/safetensors-writer'
import { TINY, readGolden, relativeError } from '../support/helpers'

const native = loadNative()
const KIND: Record<string, ComponentSpec['kind']> = { text_encoder: 'text_encoder', text_encoder_2: 'text_encoder', unet: 'unet', vae: 'vae' }
const CLASS: Record<string, string> = { text_encoder: 'CLIPTextModel', text_encoder_2: 'CLIPTextModelWithProjection', unet: 'UNet2DConditionModel', vae: 'AutoencoderKL' }
const FILE: Record<string, string> = { text_encoder: 'model', text_encoder_2: 'model', unet: 'diffusion_pytorch_model', vae: 'diffusion_pytorch_model' }

let tmp: string
test.before(async () => { tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-dir-')) })
test.after.always(async () => { await fs.rm(tmp, { recursive: true, force: true }) })

async function params (comp: string): Promise<Array<{ name: string, shape: number[], linear: boolean }>> {
  const configPath = path.join(TINY, comp, 'config.json')
  return native.componentManifest({ kind: KIND[comp], className: CLASS[comp], configPath, configText: await fs.readFile(configPath, 'utf8') })
}

async function read (files: WeightFile[], req: Array<{ name: string, shape: number[], linear: boolean }>): Promise<Float32Array[]> {
  try { return await native.readTensors(files, req) } catch (e) { throw fromNative(e) }
}

/** A copy of tiny-pg25 with everything but the weights linked; `weights` writes each component's files. */
async function copyModel (name: string, weights: (comp: string, dir: string) => Promise<void>): Promise<string> {
  const root = path.join(tmp, name)
  await fs.mkdir(root)
  for (const entry of await fs.readdir(TINY, { withFileTypes: true })) {
    const src = path.join(TINY, entry.name)
    if (!entry.isDirectory() || !(entry.name in KIND)) {
      await fs.cp(src, path.join(root, entry.name), { recursive: true })
      continue
    }
    const dir = path.join(root, entry.name)
    await fs.mkdir(dir)
    await fs.copyFile(path.join(src, 'config.json'), path.join(dir, 'config.json'))
    await weights(entry.name, dir)
  }
  return root
}

async function tinyTensors (comp: string): Promise<TensorToWrite[]> {
  const p = await params(comp)
  const values = await read([{ path: path.join(TINY, comp, `${FILE[comp]}.fp16.safetensors`), paddle: false }], p)
  return p.map((q, i) => ({ name: q.name, dtype: 'F16', shape: q.shape, data: values[i] }))
}

test('Paddle-format files (renamed, Linear weights stored [in, out]) load as the same tensors and the same image', async t => {
  const root = await copyModel('paddle', async (comp, dir) => {
    const p = await params(comp)
    const tensors = (await tinyTensors(comp)).map((tt, i) => {
      if (!p[i].linear) return tt
      const [o, n] = tt.shape
      const tr = new Float32Array(tt.data.length)
      for (let r = 0; r < o; r++) for (let c = 0; c < n; c++) tr[c * o + r] = tt.data[r * n + c]
      return { ...tt, shape: [n, o], data: tr }
    })
    const stem = KIND[comp] === 'text_encoder' ? 'model_state' : 'diffusion_paddle_model'
    await fs.writeFile(path.join(dir, `${stem}.fp16.safetensors`), serializeSafetensors(tensors, { format: 'pd' }))
  })
  let linears = 0
  for (const comp of Object.keys(KIND)) {
    const { files } = await resolveWeightFiles(path.join(root, comp), KIND[comp] === 'text_encoder' ? 'transformers' : 'diffusers', 'fp16', () => {})
    t.true(files.every(f => f.paddle && /(model_state|diffusion_paddle_model)\.fp16\.safetensors$/.test(f.path)))
    const p = await params(comp)
    linears += p.filter(q => q.linear).length
    const ours = await read(files, p)
    const ref = await read([{ path: path.join(TINY, comp, `${FILE[comp]}.fp16.safetensors`), paddle: false }], p)
    p.forEach((q, i) => t.deepEqual(ours[i], ref[i], q.name))
  }
  t.true(linears > 50)
  const pipe = await Pipeline.fromPretrained(root, { device: 'cpu' })
  const golden = readGolden('pipeline_dpm.safetensors')
  const r = await pipe.generate('Astronaut in a jungle, cold color palette, muted colors, detailed, 8k', { steps: 6, guidanceScale: 3, seed: 42, width: 128, height: 128, outputType: 'latent' })
  t.true(relativeError(r.latents!, golden.latents.data) <= 1e-3)
  await pipe.dispose()
})

test('sharded checkpoints load through *.safetensors.index.json', async t => {
  const root = await copyModel('sharded', async (comp, dir) => {
    const tensors = await tinyTensors(comp)
    const half = Math.ceil(tensors.length / 2)
    const shards = [tensors.slice(0, half), tensors.slice(half)]
    const map: Record<string, string> = {}
    for (const [i, s] of shards.entries()) {
      const name = `${FILE[comp]}-0000${i + 1}-of-00002.fp16.safetensors`
      await fs.writeFile(path.join(dir, name), serializeSafetensors(s))
      for (const tt of s) map[tt.name] = name
    }
    await fs.writeFile(path.join(dir, `${FILE[comp]}.safetensors.index.fp16.json`), JSON.stringify({ metadata: {}, weight_map: map }))
  })
  const { files } = await resolveWeightFiles(path.join(root, 'unet'), 'diffusers', 'fp16', () => {})
  t.is(files.length, 2)
  const pipe = await Pipeline.fromPretrained(root, { device: 'cpu', variant: 'fp16' })
  const r = await pipe.generate('a photo of a cat', { steps: 4, guidanceScale: 3, seed: 7, width: 128, height: 128, negativePrompt: 'blurry, low quality', outputType: 'latent' })
  t.true(relativeError(r.latents!, readGolden('pipeline_dpm_negative.safetensors').latents.data) <= 1e-3)
  await pipe.dispose()
})

test('shard names that leave the component folder are refused', async t => {
  const dir = path.join(tmp, 'escape', 'unet')
  await fs.mkdir(dir, { recursive: true })
  await fs.writeFile(path.join(tmp, 'escape', 'outside.safetensors'), serializeSafetensors([]))
  for (const bad of ['../../outside.safetensors', '/etc/passwd', 'sub/x.safetensors', '..']) {
    await fs.writeFile(path.join(dir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify({ weight_map: { w: bad } }))
    const e = await t.throwsAsync(resolveWeightFiles(dir, 'diffusers', null, () => {}))
    t.is((e as Pg25Error).code, 'PG25_BAD_CONFIG', bad)
    t.true(e.message.includes('must be a plain file name'))
  }
  await fs.symlink(path.join(tmp, 'escape', 'outside.safetensors'), path.join(dir, 'link.safetensors'))
  await fs.writeFile(path.join(dir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify({ weight_map: { w: 'link.safetensors' } }))
  const e = await t.throwsAsync(resolveWeightFiles(dir, 'diffusers', null, () => {}))
  t.is((e as Pg25Error).code, 'PG25_BAD_WEIGHTS')
  t.regex(e.message, /resolves outside the model directory/)
})

test('variant choice: fp16 files when asked for or when they are the only ones, else the plain files', async t => {
  const dir = path.join(tmp, 'variants')
  await fs.mkdir(dir)
  const warnings: string[] = []
  await fs.writeFile(path.join(dir, 'model.fp16.safetensors'), serializeSafetensors([]))
  t.regex((await resolveWeightFiles(dir, 'transformers', null, m => warnings.push(m))).files[0].path, /model\.fp16\.safetensors$/)
  await fs.writeFile(path.join(dir, 'model.safetensors'), serializeSafetensors([]))
  t.regex((await resolveWeightFiles(dir, 'transformers', null, m => warnings.push(m))).files[0].path, /model\.safetensors$/)
  t.regex((await resolveWeightFiles(dir, 'transformers', 'fp16', m => warnings.push(m))).files[0].path, /model\.fp16\.safetensors$/)
  await fs.rm(path.join(dir, 'model.fp16.safetensors'))
  const r = await resolveWeightFiles(dir, 'transformers', 'fp16', m => warnings.push(m))
  t.is(r.variant, null)
  t.is(warnings.length, 1)
  t.regex(warnings[0], /no 'fp16' variant weights/)
})

test('missing pieces are Pg25Errors naming the path at fault', async t => {
  const expectCode = async (p: Promise<unknown>, code: Pg25Error['code'], re: RegExp): Promise<void> => {
    const e = await t.throwsAsync(p)
    t.true(e instanceof Pg25Error, e.message)
    t.is((e as Pg25Error).code, code, e.message)
    t.regex(e.message, re)
  }
  await expectCode(Pipeline.fromPretrained(path.join(tmp, 'no-such-model')), 'PG25_NOT_FOUND', /no-such-model: model directory not found/)
  const root = await copyModel('broken', async (comp, dir) => {
    await fs.copyFile(path.join(TINY, comp, `${FILE[comp]}.fp16.safetensors`), path.join(dir, `${FILE[comp]}.fp16.safetensors`))
  })
  const idx = path.join(root, 'model_index.json')
  const original = await fs.readFile(idx, 'utf8')
  const edit = async (f: (j: any) => void): Promise<void> => {
    const j = JSON.parse(original); f(j); await fs.writeFile(idx, JSON.stringify(j))
  }

  await edit(j => { delete j.vae })
  await expectCode(Pipeline.fromPretrained(root, { device: 'cpu' }), 'PG25_NOT_FOUND', /component "vae" is missing/)
  await edit(j => { j.unet = ['diffusers', 'UNet2DModel'] })
  await expectCode(Pipeline.fromPretrained(root, { device: 'cpu' }), 'PG25_UNSUPPORTED', /UNet class "UNet2DModel"/)
  await edit(j => { j._class_name = 'StableDiffusionPipeline' })
  await expectCode(Pipeline.fromPretrained(root, { device: 'cpu' }), 'PG25_UNSUPPORTED', /pipeline class "StableDiffusionPipeline"/)
  await fs.writeFile(idx, '{"_class_name": ')
  await expectCode(Pipeline.fromPretrained(root, { device: 'cpu' }), 'PG25_BAD_CONFIG', /model_index\.json: malformed JSON/)
  await fs.writeFile(idx, original)

  const sched = path.join(root, 'scheduler', 'scheduler_config.json')
  const schedText = await fs.readFile(sched, 'utf8')
  await fs.writeFile(sched, JSON.stringify({ ...JSON.parse(schedText), _class_name: 'LCMScheduler' }))
  await expectCode(Pipeline.fromPretrained(root, { device: 'cpu' }), 'PG25_UNSUPPORTED', /scheduler "LCMScheduler" is not supported/)
  await fs.writeFile(sched, schedText)

  const cfg = path.join(root, 'unet', 'config.json')
  const cfgText = await fs.readFile(cfg, 'utf8')
  await fs.writeFile(cfg, JSON.stringify({ ...JSON.parse(cfgText), cross_attention_dim: undefined }))
  await expectCode(Pipeline.fromPretrained(root, { device: 'cpu' }), 'PG25_BAD_CONFIG', /unet[/\\]config\.json: "cross_attention_dim" is missing/)
  await fs.rm(cfg)
  await expectCode(Pipeline.fromPretrained(root, { device: 'cpu' }), 'PG25_NOT_FOUND', /unet[/\\]config\.json: the unet config is missing/)
  await fs.writeFile(cfg, cfgText)

  await fs.rm(path.join(root, 'vae', 'diffusion_pytorch_model.fp16.safetensors'))
  await expectCode(Pipeline.fromPretrained(root, { device: 'cpu' }), 'PG25_NOT_FOUND', /vae: no weight file found/)
  // A weight file missing a tensor names it.
  await fs.writeFile(path.join(root, 'vae', 'diffusion_pytorch_model.fp16.safetensors'), serializeSafetensors((await tinyTensors('vae')).slice(1)))
  await expectCode(Pipeline.fromPretrained(root, { device: 'cpu' }), 'PG25_MISSING_WEIGHTS', /tensor "post_quant_conv\.weight" \[4, 4, 1, 1\] is missing/)
})

test('model_index.json is read with its components and force_zeros flag', async t => {
  const idx = await readModelIndex(TINY)
  t.is(idx.className, 'StableDiffusionXLPipeline')
  t.true(idx.forceZerosForEmptyPrompt)
  t.deepEqual(idx.components.unet, ['diffusers', 'UNet2DConditionModel'])
  t.false('feature_extractor' in idx.components)
})
