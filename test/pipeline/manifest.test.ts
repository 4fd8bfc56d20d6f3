import test from 'ava'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { loadNative, type ComponentSpec } from '../../lib/native'
import { fromNative, Pg25Error } from '../../lib/errors'
import { FULL, TINY } from '../support/helpers'

const native = loadNative()
const manifest = JSON.parse(readFileSync(path.join(FULL, 'weights_manifest.json'), 'utf8'))
const index = JSON.parse(readFileSync(path.join(FULL, 'model_index.json'), 'utf8'))
const KIND: Record<string, ComponentSpec['kind']> = { text_encoder: 'text_encoder', text_encoder_2: 'text_encoder', unet: 'unet', vae: 'vae', vae_encoder: 'vae_encoder' }

function spec (root: string, comp: string, patch?: (cfg: any) => void, className?: string): ComponentSpec {
  const configPath = path.join(root, comp === 'vae_encoder' ? 'vae' : comp, 'config.json')
  const cfg = JSON.parse(readFileSync(configPath, 'utf8'))
  patch?.(cfg)
  return { kind: KIND[comp], className: className ?? index[comp === 'vae_encoder' ? 'vae' : comp][1], configPath, configText: JSON.stringify(cfg) }
}

function declared (s: ComponentSpec): Array<{ name: string, shape: number[] }> {
  try { return native.componentManifest(s) } catch (e) { throw fromNative(e) }
}

for (const comp of ['text_encoder', 'text_encoder_2', 'unet']) {
  test(`${comp}: the graph built from the real config asks for exactly the real checkpoint's tensors`, t => {
    const want: Record<string, number[]> = manifest[comp].tensors
    const got = declared(spec(FULL, comp))
    const names = got.map(d => d.name)
    t.is(new Set(names).size, names.length, 'no tensor is asked for twice')
    for (const d of got) t.deepEqual(d.shape, want[d.name], d.name)
    t.deepEqual(Object.keys(want).filter(k => !names.includes(k)), [])
    t.is(got.reduce((a, d) => a + d.shape.reduce((x, y) => x * y, 1), 0), manifest[comp].parameters)
  })
}

test('vae: the decoder and the encoder (image-to-image) together ask for exactly the real checkpoint\'s tensors', t => {
  const want: Record<string, number[]> = manifest.vae.tensors
  const dec = declared(spec(FULL, 'vae'))
  const enc = declared(spec(FULL, 'vae_encoder'))
  t.true(dec.every(d => !d.name.startsWith('encoder.') && d.name !== 'quant_conv.weight'))
  t.true(enc.every(d => d.name.startsWith('encoder.') || d.name.startsWith('quant_conv.')))
  const all = [...dec, ...enc]
  for (const d of all) t.deepEqual(d.shape, want[d.name], d.name)
  t.deepEqual(Object.keys(want).filter(k => !all.some(d => d.name === k)), [])
  t.is(all.length, Object.keys(want).length)
  t.is(all.reduce((a, d) => a + d.shape.reduce((x, y) => x * y, 1), 0), manifest.vae.parameters)
})

test('unsupported config values are refused by name, never ignored', t => {
  const cases: Array<[string, (c: any) => void, RegExp, string?]> = [
    ['unet', c => { c.down_block_types[0] = 'AttnDownBlock2D' }, /"down_block_types" entry "AttnDownBlock2D" is not supported/],
    ['unet', c => { c.use_linear_projection = false }, /"use_linear_projection"/],
    ['unet', c => { c.addition_embed_type = 'text' }, /"addition_embed_type" is "text"/],
    ['unet', c => { c.resnet_time_scale_shift = 'scale_shift' }, /"resnet_time_scale_shift"/],
    ['unet', c => { c.class_embed_type = 'timestep' }, /"class_embed_type" is set/],
    ['unet', c => { c.time_embedding_type = 'fourier' }, /"time_embedding_type" is "fourier"/],
    ['unet', c => { c.mid_block_type = 'UNetMidBlock2DSimpleCrossAttn' }, /"mid_block_type"/],
    ['unet', c => { c.up_block_types = ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'] }, /"up_block_types" entry .* does not mirror/],
    ['vae', c => { c.up_block_types[0] = 'AttnUpDecoderBlock2D' }, /"up_block_types" entry "AttnUpDecoderBlock2D"/],
    ['vae', c => { c.act_fn = 'relu' }, /"act_fn" is "relu"/],
    ['text_encoder', c => { c.hidden_act = 'relu' }, /"hidden_act" is "relu"/],
    ['unet', () => { }, /UNet class "UNet2DModel" is not supported/, 'UNet2DModel'],
    ['text_encoder', () => { }, /text encoder class "T5EncoderModel" is not supported/, 'T5EncoderModel']
  ]
  for (const [comp, patch, re, cls] of cases) {
    const e = t.throws(() => declared(spec(TINY, comp, patch, cls)))
    t.true(e instanceof Pg25Error)
    t.is((e as Pg25Error).code, 'PG25_UNSUPPORTED', e.message)
    t.regex(e.message, re)
    t.true(e.message.includes(path.join(TINY, comp, 'config.json')))
  }
})

test('missing keys and wrong types are PG25_BAD_CONFIG naming the key', t => {
  const cases: Array<[string, (c: any) => void, RegExp]> = [
    ['unet', c => { delete c.block_out_channels }, /"block_out_channels" is missing/],
    ['unet', c => { c.block_out_channels = 'wide' }, /"block_out_channels" must be a list of integers/],
    ['unet', c => { c.block_out_channels = [32, -64, 64] }, /"block_out_channels" is -64/],
    ['unet', c => { c.block_out_channels = [32, 1e9, 64] }, /"block_out_channels" is 1000000000, outside/],
    ['unet', c => { c.transformer_layers_per_block = [1, 1] }, /"transformer_layers_per_block" has 2 entries/],
    ['unet', c => { c.norm_num_groups = 7 }, /not divisible by norm_num_groups/],
    ['text_encoder', c => { c.hidden_size = '32' }, /"hidden_size" must be an integer, not string/],
    ['text_encoder', c => { c.num_attention_heads = 5 }, /not divisible by num_attention_heads/],
    ['vae', c => { c.latents_mean = [1, 2] }, /"latents_mean" must have latent_channels entries/]
  ]
  for (const [comp, patch, re] of cases) {
    const e = t.throws(() => declared(spec(TINY, comp, patch)))
    t.is((e as Pg25Error).code, 'PG25_BAD_CONFIG', e.message)
    t.regex(e.message, re)
  }
  const e = t.throws(() => declared({ ...spec(TINY, 'unet'), configText: '{"block_out_channels": [32,' }))
  t.is((e as Pg25Error).code, 'PG25_BAD_CONFIG')
  t.regex(e.message, /invalid JSON/)
})
