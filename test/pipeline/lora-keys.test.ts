// LoRA key names -> our modules, without a model: the golden LoRA's 232 kohya names (cases.json says
// which diffusers module each one is), the SGM names of the blocks that LoRA does not touch, on the real
// SDXL structure (../shared/reference/full), and the PEFT / older diffusers spellings.
import test from 'ava'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { keyRole, kohyaIndex, type LoRAComponent } from '../../lib/lora/keys'
import { FULL, GOLDEN, TINY } from '../support/helpers'

/** Module paths (weight names without `.weight`, matrices and kernels only) from tensor name -> shape. */
const modulesOf = (tensors: Record<string, number[]>): string[] =>
  Object.entries(tensors).filter(([n, s]) => n.endsWith('.weight') && s.length >= 2).map(([n]) => n.slice(0, -'.weight'.length))

function tinyTensors (dir: string, file: string): Record<string, number[]> {
  const buf = readFileSync(path.join(TINY, dir, file))
  const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString('utf8'))
  delete header.__metadata__
  return Object.fromEntries(Object.entries(header).map(([n, e]: [string, any]) => [n, e.shape]))
}

test('the golden kohya LoRA: every name maps to the module diffusers maps it to', t => {
  const index = kohyaIndex({
    unet: modulesOf(tinyTensors('unet', 'diffusion_pytorch_model.fp16.safetensors')),
    text_encoder: modulesOf(tinyTensors('text_encoder', 'model.fp16.safetensors')),
    text_encoder_2: modulesOf(tinyTensors('text_encoder_2', 'model.fp16.safetensors'))
  })
  const cases = JSON.parse(readFileSync(path.join(GOLDEN, 'lora', 'cases.json'), 'utf8'))
  t.is(cases.lora.modules.length, 232)
  for (const m of cases.lora.modules) t.deepEqual(index.get(m.kohya), { component: m.component, module: m.module }, m.kohya)
})

test('SGM names on the real SDXL layout: resnets, samplers, skips, embeddings; no two modules share a name', t => {
  const manifest = JSON.parse(readFileSync(path.join(FULL, 'weights_manifest.json'), 'utf8'))
  const modules = Object.fromEntries((['unet', 'text_encoder', 'text_encoder_2'] as LoRAComponent[]).map(c => [c, modulesOf(manifest[c].tensors)])) as Record<LoRAComponent, string[]>
  const index = kohyaIndex(modules)
  // each UNet module under its diffusers and its SGM name, text encoder 1 under lora_te1_ and lora_te_
  t.is(index.size, 2 * modules.unet.length + 2 * modules.text_encoder.length + modules.text_encoder_2.length)
  const expect: Record<string, string> = {
    lora_unet_input_blocks_0_0: 'conv_in',
    lora_unet_time_embed_2: 'time_embedding.linear_2',
    lora_unet_label_emb_0_0: 'add_embedding.linear_1',
    lora_unet_input_blocks_1_0_emb_layers_1: 'down_blocks.0.resnets.0.time_emb_proj',
    lora_unet_input_blocks_3_0_op: 'down_blocks.0.downsamplers.0.conv',
    lora_unet_input_blocks_4_0_skip_connection: 'down_blocks.1.resnets.0.conv_shortcut',
    lora_unet_input_blocks_8_1_transformer_blocks_1_attn2_to_k: 'down_blocks.2.attentions.1.transformer_blocks.1.attn2.to_k',
    lora_unet_middle_block_2_out_layers_3: 'mid_block.resnets.1.conv2',
    lora_unet_middle_block_1_transformer_blocks_9_ff_net_2: 'mid_block.attentions.0.transformer_blocks.9.ff.net.2',
    lora_unet_output_blocks_2_2_conv: 'up_blocks.0.upsamplers.0.conv',
    lora_unet_output_blocks_5_2_conv: 'up_blocks.1.upsamplers.0.conv',
    lora_unet_output_blocks_6_0_skip_connection: 'up_blocks.2.resnets.0.conv_shortcut',
    lora_unet_output_blocks_8_0_in_layers_2: 'up_blocks.2.resnets.2.conv1',
    lora_unet_out_2: 'conv_out',
    lora_unet_down_blocks_1_attentions_0_proj_in: 'down_blocks.1.attentions.0.proj_in'
  }
  for (const [kohya, module] of Object.entries(expect)) t.deepEqual(index.get(kohya), { component: 'unet', module }, kohya)
  t.deepEqual(index.get('lora_te2_text_projection'), { component: 'text_encoder_2', module: 'text_projection' })
  t.deepEqual(index.get('lora_te_text_model_encoder_layers_11_mlp_fc2'), { component: 'text_encoder', module: 'text_model.encoder.layers.11.mlp.fc2' })
})

test('PEFT and older diffusers spellings, alphas, and unsupported variants', t => {
  const role = (k: string): unknown => keyRole(k)
  t.deepEqual(role('unet.mid_block.attentions.0.proj_in.lora_A.weight'), { group: 'unet.mid_block.attentions.0.proj_in', component: 'unet', module: 'mid_block.attentions.0.proj_in', part: 'down' })
  t.deepEqual(role('text_encoder_2.text_model.encoder.layers.0.mlp.fc1.lora_B.default.weight'), { group: 'text_encoder_2.text_model.encoder.layers.0.mlp.fc1', component: 'text_encoder_2', module: 'text_model.encoder.layers.0.mlp.fc1', part: 'up' })
  t.deepEqual(role('down_blocks.1.attentions.0.proj_out.lora.up.weight'), { group: 'unet.down_blocks.1.attentions.0.proj_out', component: 'unet', module: 'down_blocks.1.attentions.0.proj_out', part: 'up' })
  t.deepEqual(role('unet.up_blocks.0.attentions.1.transformer_blocks.0.attn1.processor.to_out_lora.down.weight'), { group: 'unet.up_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0', component: 'unet', module: 'up_blocks.0.attentions.1.transformer_blocks.0.attn1.to_out.0', part: 'down' })
  t.deepEqual(role('text_encoder.text_model.encoder.layers.3.self_attn.to_k_lora.up.weight'), { group: 'text_encoder.text_model.encoder.layers.3.self_attn.k_proj', component: 'text_encoder', module: 'text_model.encoder.layers.3.self_attn.k_proj', part: 'up' })
  t.deepEqual(role('text_encoder.text_model.encoder.layers.3.mlp.fc1.lora_linear_layer.down.weight'), { group: 'text_encoder.text_model.encoder.layers.3.mlp.fc1', component: 'text_encoder', module: 'text_model.encoder.layers.3.mlp.fc1', part: 'down' })
  t.deepEqual(role('unet.mid_block.attentions.0.proj_in.alpha'), { group: 'unet.mid_block.attentions.0.proj_in', component: 'unet', module: 'mid_block.attentions.0.proj_in', part: 'alpha' })
  t.deepEqual(role('lora_unet_middle_block_1_proj_in.alpha'), { group: 'lora_unet_middle_block_1_proj_in', component: null, module: 'lora_unet_middle_block_1_proj_in', part: 'alpha' })
  t.deepEqual(role('lora_unet_middle_block_1_proj_in.hada_w1_a'), { variant: 'LoHa (LyCORIS)' })
  t.deepEqual(role('lora_unet_middle_block_1_proj_in.dora_scale'), { variant: 'DoRA' })
  t.deepEqual(role('unet.mid_block.attentions.0.proj_in.lora_magnitude_vector'), { variant: 'DoRA' })
  t.is(role('model.diffusion_model.input_blocks.0.0.weight'), null)
})
