import test from 'ava'
import { promises as fs, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Pipeline, Pg25Error } from '../../lib'
import { loadNative, type ComponentSpec } from '../../lib/native'
import { serializeSafetensors, type TensorToWrite } from '../../lib/io/safetensors-writer'
import { singleFileAliases } from '../../lib/model/single-file'
import { FULL, GOLDEN, TINY } from '../support/helpers'

const native = loadNative()
const CLASS: Record<string, string> = { text_encoder: 'CLIPTextModel', text_encoder_2: 'CLIPTextModelWithProjection', unet: 'UNet2DConditionModel', vae: 'AutoencoderKL', vae_encoder: 'AutoencoderKL' }
const KIND: Record<string, ComponentSpec['kind']> = { text_encoder: 'text_encoder', text_encoder_2: 'text_encoder', unet: 'unet', vae: 'vae', vae_encoder: 'vae_encoder' }
const spec = (root: string, comp: string): ComponentSpec => {
  const configPath = path.join(root, comp === 'vae_encoder' ? 'vae' : comp, 'config.json')
  return { kind: KIND[comp], className: CLASS[comp], configPath, configText: readFileSync(configPath, 'utf8') }
}

let tmp: string
test.before(async () => { tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'pg25-sf-')) })
test.after.always(async () => { await fs.rm(tmp, { recursive: true, force: true }) })

test('the mapping puts real Playground/SDXL tensors where Stability\'s single files keep them', t => {
  const where = (comp: string): Map<string, any> => new Map(singleFileAliases(comp, spec(FULL, comp)).map(a => [a.name, a]))
  const unet = where('unet')
  const expect: Array<[string, string]> = [
    ['down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight', 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight'],
    ['down_blocks.0.downsamplers.0.conv.weight', 'model.diffusion_model.input_blocks.3.0.op.weight'],
    ['down_blocks.1.resnets.0.conv_shortcut.weight', 'model.diffusion_model.input_blocks.4.0.skip_connection.weight'],
    ['down_blocks.2.attentions.1.transformer_blocks.9.ff.net.2.bias', 'model.diffusion_model.input_blocks.8.1.transformer_blocks.9.ff.net.2.bias'],
    ['up_blocks.0.upsamplers.0.conv.weight', 'model.diffusion_model.output_blocks.2.2.conv.weight'],
    ['up_blocks.1.upsamplers.0.conv.weight', 'model.diffusion_model.output_blocks.5.2.conv.weight'],
    ['up_blocks.2.resnets.2.conv2.weight', 'model.diffusion_model.output_blocks.8.0.out_layers.3.weight'],
    ['up_blocks.0.resnets.0.time_emb_proj.weight', 'model.diffusion_model.output_blocks.0.0.emb_layers.1.weight'],
    ['mid_block.attentions.0.proj_in.weight', 'model.diffusion_model.middle_block.1.proj_in.weight'],
    ['mid_block.resnets.1.norm1.bias', 'model.diffusion_model.middle_block.2.in_layers.0.bias'],
    ['add_embedding.linear_1.weight', 'model.diffusion_model.label_emb.0.0.weight'],
    ['time_embedding.linear_2.bias', 'model.diffusion_model.time_embed.2.bias'],
    ['conv_norm_out.weight', 'model.diffusion_model.out.0.weight']
  ]
  for (const [d, sgm] of expect) t.is(unet.get(d)?.source, sgm, d)
  const vae = new Map([...where('vae'), ...where('vae_encoder')])
  const vexpect: Array<[string, string]> = [
    ['decoder.up_blocks.0.resnets.0.conv1.weight', 'first_stage_model.decoder.up.3.block.0.conv1.weight'],
    ['decoder.up_blocks.3.resnets.0.conv_shortcut.weight', 'first_stage_model.decoder.up.0.block.0.nin_shortcut.weight'],
    ['decoder.up_blocks.2.upsamplers.0.conv.bias', 'first_stage_model.decoder.up.1.upsample.conv.bias'],
    ['encoder.mid_block.attentions.0.to_out.0.weight', 'first_stage_model.encoder.mid.attn_1.proj_out.weight'],
    ['decoder.mid_block.attentions.0.group_norm.weight', 'first_stage_model.decoder.mid.attn_1.norm.weight'],
    ['decoder.conv_norm_out.weight', 'first_stage_model.decoder.norm_out.weight'],
    ['encoder.down_blocks.0.downsamplers.0.conv.weight', 'first_stage_model.encoder.down.0.downsample.conv.weight'],
    ['decoder.mid_block.resnets.1.conv2.weight', 'first_stage_model.decoder.mid.block_2.conv2.weight'],
    ['post_quant_conv.weight', 'first_stage_model.post_quant_conv.weight']
  ]
  for (const [d, sgm] of vexpect) t.is(vae.get(d)?.source, sgm, d)
  const g = where('text_encoder_2')
  t.deepEqual(g.get('text_model.encoder.layers.31.self_attn.k_proj.weight'), { name: 'text_model.encoder.layers.31.self_attn.k_proj.weight', source: 'conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight', op: 'rows', begin: 1280, count: 1280 })
  t.deepEqual(g.get('text_projection.weight'), { name: 'text_projection.weight', source: 'conditioner.embedders.1.model.text_projection', op: 'transpose' })
  t.is(g.get('text_model.encoder.layers.0.mlp.fc1.bias').source, 'conditioner.embedders.1.model.transformer.resblocks.0.mlp.c_fc.bias')
  t.is(g.get('text_model.embeddings.position_embedding.weight').source, 'conditioner.embedders.1.model.positional_embedding')
  t.is(where('text_encoder').get('text_model.encoder.layers.11.mlp.fc2.weight').source, 'conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight')
  // Every tensor of every component gets a distinct place in the file.
  for (const comp of ['unet', 'vae', 'text_encoder', 'text_encoder_2']) {
    const sources = singleFileAliases(comp, spec(FULL, comp)).filter(a => a.op !== 'rows').map(a => a.source)
    t.is(new Set(sources).size, sources.length, comp)
  }
})

/** tiny-pg25 written as one SGM-layout file (VAE attention as 1x1 convs, fused q/k/v, transposed projection). */
async function writeSingleFile (file: string, withStats: boolean): Promise<void> {
  const out = new Map<string, TensorToWrite>()
  const fp = (c: string): string => path.join(TINY, c === 'vae_encoder' ? 'vae' : c, c.startsWith('text') ? 'model.fp16.safetensors' : 'diffusion_pytorch_model.fp16.safetensors')
  for (const comp of ['text_encoder', 'text_encoder_2', 'unet', 'vae', 'vae_encoder']) {
    const decl = native.componentManifest(spec(TINY, comp))
    const values = await native.readTensors([{ path: fp(comp), paddle: false }], decl)
    const aliases = new Map(singleFileAliases(comp, spec(TINY, comp)).map(a => [a.name, a]))
    decl.forEach((d, i) => {
      const a = aliases.get(d.name)!
      let shape = d.shape
      let data = values[i]
      if (a.op === 'transpose') {
        const [r, c] = d.shape
        data = new Float32Array(r * c)
        for (let y = 0; y < r; y++) for (let x = 0; x < c; x++) data[x * r + y] = values[i][y * c + x]
        shape = [c, r]
      } else if (a.op === 'rows') {
        const prev = out.get(a.source)
        const rows = d.shape[0]
        const per = values[i].length / rows
        const fused = prev?.data ?? new Float32Array(3 * values[i].length)
        fused.set(values[i], a.begin! * per)
        out.set(a.source, { name: a.source, dtype: 'F16', shape: [3 * rows, ...d.shape.slice(1)], data: fused })
        return
      } else if (/mid_block\.attentions\.0\.(to_[qkv]|to_out\.0)\.weight$/.test(d.name) && comp.startsWith('vae')) {
        shape = [...d.shape, 1, 1] // the original VAE stores its attention projections as 1x1 convolutions
      }
      out.set(a.source, { name: a.source, dtype: 'F16', shape, data })
    })
  }
  const tensors = [...out.values()]
  if (withStats) {
    const vae = JSON.parse(readFileSync(path.join(TINY, 'vae', 'config.json'), 'utf8'))
    tensors.push({ name: 'edm_mean', dtype: 'F32', shape: [1, 4, 1, 1], data: Float32Array.from(vae.latents_mean) })
    tensors.push({ name: 'edm_std', dtype: 'F32', shape: [1, 4, 1, 1], data: Float32Array.from(vae.latents_std) })
  }
  tensors.push({ name: 'conditioner.embedders.1.model.logit_scale', dtype: 'F32', shape: [], data: Float32Array.from([4.6]) })
  await fs.writeFile(file, serializeSafetensors(tensors))
}

test('a single-file copy of tiny-pg25 gives the same tensors and the same images as the diffusers layout', async t => {
  const file = path.join(tmp, 'tiny-pg25.safetensors')
  await writeSingleFile(file, true)
  // Configs from a folder whose VAE config lacks the latent statistics: the file's edm_mean/edm_std supply them.
  const cfgDir = path.join(tmp, 'config')
  await fs.cp(TINY, cfgDir, { recursive: true, filter: src => !src.endsWith('.safetensors') })
  const vaeCfg = path.join(cfgDir, 'vae', 'config.json')
  const { latents_mean: _m, latents_std: _s, ...rest } = JSON.parse(await fs.readFile(vaeCfg, 'utf8'))
  await fs.writeFile(vaeCfg, JSON.stringify(rest))
  const single = await Pipeline.fromSingleFile(file, { config: cfgDir, device: 'cpu' })
  const pipe = await Pipeline.fromPretrained(TINY, { device: 'cpu' })
  const opts = { steps: 3, width: 64, height: 64, seed: 12, negativePrompt: 'blurry' }
  const a = await single.generate('a photo of a cat', opts)
  const b = await pipe.generate('a photo of a cat', opts)
  t.deepEqual(a.images[0].data, b.images[0].data)
  const i2i = { image: path.join(GOLDEN, 'img2img_input.png'), strength: 0.6, steps: 5, seed: 3, outputType: 'latent' as const }
  t.deepEqual((await single.generate('a cat', i2i)).latents, (await pipe.generate('a cat', i2i)).latents)
  await single.dispose()
  await pipe.dispose()
})

test('a single file that is not an SDXL-family checkpoint, or no config folder, is a clear error', async t => {
  const file = path.join(tmp, 'other.safetensors')
  await fs.writeFile(file, serializeSafetensors([{ name: 'model.diffusion_model.x', dtype: 'F32', shape: [1], data: new Float32Array(1) }]))
  const e = await t.throwsAsync(Pipeline.fromSingleFile(file, { config: TINY, device: 'cpu' }))
  t.is((e as Pg25Error).code, 'PG25_BAD_WEIGHTS')
  t.regex(e.message, /no VAE tensors \(first_stage_model\.\*\)/)
  const e2 = await t.throwsAsync(Pipeline.fromSingleFile(file, {} as any))
  t.is((e2 as Pg25Error).code, 'PG25_INVALID_ARGUMENT')
  t.regex(e2.message, /options\.config/)
})
