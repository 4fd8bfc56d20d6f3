import test from 'ava'
import { promises as fs, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Pipeline, Pg25Error } from '../../lib'
import { componentManifest, type ComponentSpec } from '../../lib/native'
import { TINY } from '../support/helpers'

// Every field of every config and index file, mutated in generated ways: each mutated model either
// loads and runs or rejects with a Pg25Error, never anything else; impossible sizes reject before
// any weight is allocated.
const VALUES: Array<[string, unknown]> = [['missing', undefined], ['null', null], ['string', 'x'], ['negative', -1], ['zero', 0],
  ['huge', 1e9], ['fraction', 1.5], ['empty list', []], ['object', { a: 1 }], ['bool', true], ['overflow', 2 ** 70]]

function mutations (value: unknown, at: string[] = []): Array<{ where: string[], kind: string, value: unknown }> {
  const out: Array<{ where: string[], kind: string, value: unknown }> = []
  if (at.length > 0) for (const [kind, v] of VALUES) out.push({ where: at, kind, value: v })
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...mutations(v, [...at, String(i)])))
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) out.push(...mutations(v, [...at, k]))
  return out
}

function apply (obj: any, where: string[], value: unknown): any {
  const copy = structuredClone(obj)
  let o = copy
  for (const k of where.slice(0, -1)) o = o[k]
  const last = where[where.length - 1]
  if (value === undefined) { if (Array.isArray(o)) o.splice(Number(last), 1); else delete o[last] } else o[last] = value
  return copy
}

const KIND: Record<string, ComponentSpec['kind']> = { text_encoder: 'text_encoder', text_encoder_2: 'text_encoder', unet: 'unet', vae: 'vae' }
const CLASS: Record<string, string> = { text_encoder: 'CLIPTextModel', text_encoder_2: 'CLIPTextModelWithProjection', unet: 'UNet2DConditionModel', vae: 'AutoencoderKL' }

test('component configs: hundreds of generated mutations each build or reject with a Pg25Error naming the file', t => {
  let tried = 0
  let rejected = 0
  const codes = new Map<string, number>()
  for (const comp of Object.keys(KIND)) {
    const configPath = path.join(TINY, comp, 'config.json')
    const cfg = JSON.parse(readFileSync(configPath, 'utf8'))
    for (const m of mutations(cfg)) {
      tried++
      const configText = JSON.stringify(apply(cfg, m.where, m.value))
      try {
        const decl = componentManifest({ kind: KIND[comp], className: CLASS[comp], configPath, configText })
        // Accepted configs must still describe sane tensors.
        for (const d of decl) t.true(d.shape.every(x => Number.isSafeInteger(x) && x > 0), `${comp} ${m.where.join('.')}=${m.kind}: ${d.name}`)
      } catch (err) {
        rejected++
        t.true(err instanceof Pg25Error, `${comp} ${m.where.join('.')}=${m.kind}: ${String(err)}`)
        const e = err as Pg25Error
        t.true(e.message.includes(configPath), e.message)
        codes.set(e.code, (codes.get(e.code) ?? 0) + 1)
      }
    }
  }
  t.log(`${tried} config mutations, ${rejected} rejected: ${JSON.stringify(Object.fromEntries(codes))}`)
  t.true(tried >= 500, `${tried}`)
  t.true(rejected >= 300)
})

test('model folders with mutated index, scheduler, tokenizer and component configs load or reject cleanly; huge sizes reject before allocating', async t => {
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-mut-'))
  const root = path.join(tmp, 'model')
  // A real copy: weight files symlinked out of the model folder are refused.
  await fs.cp(TINY, root, { recursive: true })
  const files = ['model_index.json', 'scheduler/scheduler_config.json', 'tokenizer/tokenizer_config.json', 'tokenizer_2/tokenizer_config.json', 'unet/config.json', 'vae/config.json', 'text_encoder_2/config.json']
  let tried = 0
  let loaded = 0
  const rssBefore = process.memoryUsage.rss()
  try {
    for (const f of files) {
      const file = path.join(root, f)
      const original = await fs.readFile(file, 'utf8')
      const json = JSON.parse(original)
      // Every top-level key, set to one value kind (removal included), rotating through all kinds.
      const all = Object.keys(json).map((k, i) => {
        const [kind, value] = VALUES[(i + tried) % VALUES.length]
        return { where: [k], kind, value }
      })
      for (const m of all) {
        tried++
        await fs.writeFile(file, JSON.stringify(apply(json, m.where, m.value)))
        try {
          const pipe = await Pipeline.fromPretrained(root, { device: 'cpu', onWarning: () => {} })
          loaded++
          try {
            await pipe.generate('a cat', { steps: 1, width: 64, height: 64, seed: 1, outputType: 'latent' })
          } catch (err) {
            t.true(err instanceof Pg25Error, `${f} ${m.where.join('.')}=${m.kind}: generate threw ${String(err)}`)
          }
          await pipe.dispose()
        } catch (err) {
          t.true(err instanceof Pg25Error, `${f} ${m.where.join('.')}=${m.kind}: ${String(err)}`)
          t.true(/PG25_/.test((err as Pg25Error).code), (err as Error).message)
        }
      }
      await fs.writeFile(file, original)
    }
    // Absurd sizes are refused from the configs alone, before any weight is read or allocated.
    const absurd: Array<[string, Record<string, unknown>]> = [
      ['unet/config.json', { block_out_channels: [65536, 65536, 65536] }],
      ['unet/config.json', { transformer_layers_per_block: [256, 256, 256], block_out_channels: [4096, 8192, 8192], norm_num_groups: 8 }],
      ['text_encoder_2/config.json', { hidden_size: 16384, num_hidden_layers: 256, num_attention_heads: 128 }],
      ['vae/config.json', { block_out_channels: [16384, 16384, 16384, 16384] }]
    ]
    for (const [f, patch] of absurd) {
      tried++
      const file = path.join(root, f)
      const original = await fs.readFile(file, 'utf8')
      await fs.writeFile(file, JSON.stringify({ ...JSON.parse(original), ...patch }))
      const e = await t.throwsAsync(Pipeline.fromPretrained(root, { device: 'cpu' }))
      t.is((e as Pg25Error).code, 'PG25_OUT_OF_MEMORY', e.message)
      await fs.writeFile(file, original)
    }
    t.true(process.memoryUsage.rss() - rssBefore < 1 << 30, 'no large allocation happened')
  } finally {
    await fs.rm(tmp, { recursive: true, force: true })
  }
  t.log(`${tried} model-folder mutations, ${loaded} loaded and ran`)
  t.true(tried >= 100, `${tried}`)
})
