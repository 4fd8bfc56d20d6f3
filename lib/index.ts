// The root export: the pipeline, its types and errors, and the pieces it is built from (schedulers,
// tokenizer, generator, models). What only servers, fleets or download tools need lives behind subpaths
// that load only there: '@pg25/native/server', '@pg25/native/fleet' (needs bullmq), '@pg25/native/hub'.

// First: a Node.js too old for the package is refused before anything else loads.
import './node-version'
export { Pipeline } from './pipeline'
export type { GenerateOptions, GenerateResult, LoadOptions, LoadProgress, MemoryInfo, Size, StepInfo } from './pipeline'
export type { EncodePromptOptions, PromptStyle } from './pipeline'
export type { GeneratedImage, ImageInput, RGBImage } from './image'
export { readPngText } from './image'
export { Pg25Error, AbortError, ERROR_CODES } from './errors'
export type { Pg25ErrorCode } from './errors'
export { CLIPTokenizer } from './tokenizer/clip-tokenizer'
export type { Encoding } from './tokenizer/clip-tokenizer'
export { createScheduler, EDMDPMSolverMultistepScheduler, EDMEulerScheduler, hostOps } from './scheduler'
export type { Scheduler, SchedulerName, TensorOps } from './scheduler'
export { TorchGenerator } from './random/torch-generator'
export { Runtime } from './runtime'
export { runtimeInfo } from './runtime-info'
export type { RuntimeInfo } from './runtime-info'
export type { Device } from './runtime'
export { TextEncoderModel, UNetModel, VAEModel, VAEEncoderModel } from './model/components'
export type { LoRAInfo, LoRALoadOptions } from './lora/lora'
export { readModelIndex, resolveComponent, resolveWeightFiles } from './model/model-dir'
export { ensureDemoModel } from './demo/demo-model'
