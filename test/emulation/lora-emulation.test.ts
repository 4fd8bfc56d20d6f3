// LoRA merging on the CUDA backend (fp16 weights, the merge as a cuBLASLt GEMM with the original as
// its residual), run in the CPU emulation of CUDA, and on the CPU backend: the golden LoRA stages
// (text encoders and one UNet call with the LoRA at scales 1.0 and 0.6, then unloaded) within the
// stage tolerances of ../shared/README.md (relative 1e-4 in float32, 2e-2 in float16).
import test from 'ava'
import path from 'node:path'
import { CLIPTokenizer, Runtime, TextEncoderModel, UNetModel, readModelIndex, resolveComponent } from '../../lib'
import { LoRAs } from '../../lib/lora/lora'
import { GOLDEN, TINY, goldenUnet, readGolden, relativeError } from '../support/helpers'
import { emulationReport } from '../support/emulation'

const PROMPT = 'Astronaut in a jungle, cold color palette, muted colors, detailed, 8k'

for (const [device, tol] of [['cpu', 1e-4], ['cuda', 2e-2]] as const) {
  test.serial(`${device}: text encoders and the UNet with the kohya LoRA at 1.0 and 0.6, then unloaded`, async t => {
    const rt = Runtime.open(device, () => {})
    const index = await readModelIndex(TINY)
    const load = async (name: string): Promise<any> => await resolveComponent(TINY, index, name, null, () => {})
    const te1 = await TextEncoderModel.load(rt, await load('text_encoder'))
    const te2 = await TextEncoderModel.load(rt, await load('text_encoder_2'))
    const unet = await UNetModel.load(rt, await load('unet'))
    const tok1 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer'))
    const tok2 = await CLIPTokenizer.fromPretrained(path.join(TINY, 'tokenizer_2'))
    const g = readGolden(path.join(GOLDEN, 'lora', 'lora_stages.safetensors'))
    const loras = new LoRAs(rt, { text_encoder: te1.id, text_encoder_2: te2.id, unet: unet.id })
    await loras.add(await loras.read(path.join(GOLDEN, 'lora', 'lora_kohya.safetensors'), { name: 'k' }))
    for (const scale of ['1.0', '0.6']) {
      await loras.apply({ k: Number(scale) })
      const [a, b] = await Promise.all([te1.encode([tok1.encode(PROMPT)]), te2.encode([tok2.encode(PROMPT)])])
      const embeds = rt.toHost(rt.engine.concat(a.penultimate, b.penultimate, -1))
      for (const [name, ours] of [['prompt_embeds', embeds], ['pooled_prompt_embeds', rt.toHost(b.pooled!)]] as const) {
        const err = relativeError(ours, g[`scale${scale}.${name}`].data)
        t.true(err <= tol, `scale ${scale} ${name}: ${err}`)
      }
      const u = readGolden('unet.safetensors')
      const out = await unet.predict(rt.fromHost(u.sample.data, u.sample.shape), u.timestep.data[0],
        rt.fromHost(u.encoder_hidden_states.data, u.encoder_hidden_states.shape),
        rt.fromHost(u.text_embeds.data, u.text_embeds.shape), u.time_ids.data)
      const err = relativeError(rt.toHost(out), g[`scale${scale}.unet_out`].data)
      t.true(err <= tol, `scale ${scale} unet_out: ${err}`)
    }
    await loras.remove('k')
    const base = await goldenUnet(rt, unet)
    t.true(base.err <= tol, `unloaded: unet ${base.err}`)
    rt.dispose()
    if (device === 'cuda') t.deepEqual(emulationReport().misuse, [])
  })
}
