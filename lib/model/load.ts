// Loading a model for Pipeline: what both loaders read from a diffusers-format folder (index,
// scheduler, tokenizers), then the four components' weights onto a fresh runtime, with the memory
// check before and load progress during.
import path from 'node:path'
import { Pg25Error, throwIfAborted } from '../errors'
import { LoadMeter } from './load-progress'
import { loadNative } from '../native'
import { checkModelMemory, costModel, cpuPrecision, type CostModel, type Pageable } from '../memory'
import { TextEncoderModel, UNetModel, VAEModel } from './components'
import type { LoadOptions } from '../options'
import { Runtime, writeNotice } from '../runtime'
import { createScheduler } from '../scheduler'
import type { RawConfig } from '../scheduler/edm-config'
import { CLIPTokenizer } from '../tokenizer/clip-tokenizer'
import { readJsonObject } from './files'
import { readModelIndex, requireComponent, requireInside, type ComponentSource, type ModelIndex } from './model-dir'

/** The weighted components, in load order (the sources passed to loadModels follow it). */
export const COMPONENTS = ['text_encoder', 'text_encoder_2', 'unet', 'vae'] as const

export interface Prepared {
  root: string
  index: ModelIndex
  schedulerConfig: RawConfig
  schedulerSource: string
  tokenizers: [CLIPTokenizer, CLIPTokenizer]
  warn: (msg: string) => void
}

/** What both loaders read from a diffusers-format folder: the index, scheduler and tokenizers. */
export async function prepare (dir: string, options: LoadOptions): Promise<Prepared> {
  const warn = options.onWarning ?? writeNotice
  throwIfAborted(options.signal)
  const root = path.resolve(dir)
  const index = await readModelIndex(root)
  const schedulerSource = path.join(root, 'scheduler', 'scheduler_config.json')
  requireComponent(index, 'scheduler')
  for (const name of ['scheduler', 'tokenizer', 'tokenizer_2']) await requireInside(root, path.join(root, name), `the ${name} folder`, 'PG25_BAD_CONFIG')
  const schedulerConfig = await readJsonObject(schedulerSource, 'the scheduler config')
  createScheduler(schedulerConfig, schedulerSource) // refuse an unsupported scheduler before loading weights
  for (const name of ['tokenizer', 'tokenizer_2']) {
    const [, cls] = requireComponent(index, name)
    if (cls !== 'CLIPTokenizer' && cls !== 'CLIPTokenizerFast') throw new Pg25Error('PG25_UNSUPPORTED', `${index.file}: tokenizer class "${cls}" is not supported (CLIPTokenizer)`)
  }
  const tokenizers = await Promise.all([
    CLIPTokenizer.fromPretrained(path.join(root, 'tokenizer')),
    CLIPTokenizer.fromPretrained(path.join(root, 'tokenizer_2'))
  ]) as [CLIPTokenizer, CLIPTokenizer]
  return { root, index, schedulerConfig, schedulerSource, tokenizers, warn }
}

export interface LoadedModels {
  rt: Runtime
  encoders: [TextEncoderModel, TextEncoderModel]
  unet: UNetModel
  vae: VAEModel
  vaeSource: ComponentSource
  cost: CostModel
  /** the bytes the text encoders' and the UNet's weights take on the backend */
  pageable: Pageable
}

/** Opens the runtime and loads the components from `sources` (in COMPONENTS order); on failure the runtime is closed again. */
export async function loadModels (prep: Prepared, sources: ComponentSource[], options: LoadOptions): Promise<LoadedModels> {
  const { signal, onProgress } = options
  throwIfAborted(signal)
  const rt = Runtime.open(options.device ?? 'auto', prep.warn)
  try {
    let weightBytes: number | undefined
    if (rt.device === 'cpu') {
      const bf16Dot = loadNative().runtimeInfo().cpuIsa === 'avx512bf16'
      const precision = cpuPrecision(sources, options.precision ?? 'auto', options.memoryLimit, rt.freeMemory(), bf16Dot, prep.warn)
      rt.engine.setWeightPrecision(precision)
      weightBytes = precision === 'fp32' ? 4 : 2
    }
    checkModelMemory(sources, rt.device, options.memoryLimit, rt.freeMemory(), weightBytes, rt.device === 'cpu' && options.offload !== 'never')
    const meter = onProgress == null ? undefined : await LoadMeter.create(sources, onProgress)
    const step = async <T>(i: number, load: (onBytes?: (bytes: number) => void) => Promise<T>): Promise<T> => {
      throwIfAborted(signal)
      return await (meter === undefined ? load() : meter.run(COMPONENTS[i], load))
    }
    const before = rt.engine.bytesInUse()
    const te1 = await step(0, async b => await TextEncoderModel.load(rt, sources[0], undefined, b))
    const te2 = await step(1, async b => await TextEncoderModel.load(rt, sources[1], undefined, b))
    const afterEncoders = rt.engine.bytesInUse()
    const unet = await step(2, async b => await UNetModel.load(rt, sources[2], undefined, b))
    const pageable = { encoders: afterEncoders - before, unet: rt.engine.bytesInUse() - afterEncoders }
    const vae = await step(3, async b => await VAEModel.load(rt, sources[3], undefined, b))
    throwIfAborted(signal)
    if (te1.hiddenSize + te2.hiddenSize !== unet.info.crossAttentionDim) {
      throw new Pg25Error('PG25_BAD_CONFIG', `${sources[2].configPath}: cross_attention_dim ${unet.info.crossAttentionDim} differs from the text encoders' ${te1.hiddenSize} + ${te2.hiddenSize}`)
    }
    return { rt, encoders: [te1, te2], unet, vae, vaeSource: sources[3], cost: costModel(sources, rt.device), pageable }
  } catch (err) {
    rt.dispose()
    throw err
  }
}
