// Loads the addon (build/Release when there is one, else this platform's binary package, else a prebuilt binary in
// prebuilds/) and types what it exports.
import fs from 'node:fs'
import path from 'node:path'
import { Pg25Error, fromNative } from './errors'
import { checkBinary, platformBinary, platformPackage } from './platform-binary'

export interface NativeTensor {
  readonly shape: number[]
  readonly disposed: boolean
  dispose(): void
}

export interface WeightFile { path: string, paddle: boolean }

/** A tensor stored under another name (single-file checkpoints): renamed, a block of rows, or transposed. */
export interface WeightAlias { name: string, source: string, op?: 'rename' | 'rows' | 'transpose', begin?: number, count?: number }

export interface ComponentSpec {
  kind: 'text_encoder' | 'unet' | 'vae' | 'vae_encoder'
  className: string
  configPath: string
  configText: string
}

/** What a loaded component's graph reports of itself, by its kind. */
export type ComponentInfo =
  | { kind: 'unet', inChannels: number, sampleSize: number, crossAttentionDim: number, textEmbedsDim: number } |
  { kind: 'vae', latentChannels: number, scaleFactor: number, scalingFactor: number, latentsMean: number[], latentsStd: number[] } |
  { kind: 'text_encoder', hiddenSize: number, maxPositions: number } |
  { kind: 'vae_encoder' }

/** The addon's cancellation flag, checked by native jobs between blocks (the model calls' optional last argument). */
export interface CancelToken { cancel(): void, readonly cancelled: boolean }

export interface NativeEngine {
  readonly device: string
  /** `onBytes` gets the bytes loaded so far (as stored in the files) after each tensor, on the main thread. */
  loadComponent(
    spec: ComponentSpec, files: WeightFile[], aliases?: WeightAlias[],
    options?: { syntheticSeed: number } | { onBytes: (bytes: number) => void }
  ): Promise<number>
  componentInfo(id: number): ComponentInfo
  /** Every weight the component's graph holds: name -> shape. */
  weightShapes(id: number): Record<string, number[]>
  /** Sets each named weight to its original (read again from the files) plus up [out, rank] · down [rank, k]; rank 0: the original. */
  mergeLoRA(id: number, updates: Array<{ name: string, rank: number, up?: Float32Array, down?: Float32Array }>): Promise<void>
  /** Moves the component's weights into a scratch file until a call uses it again; false where they stay (CUDA). */
  pageOut(id: number): Promise<boolean>
  encodeText(
    id: number, ids: Int32Array, batch: number, cancel?: CancelToken
  ): Promise<{ penultimate: NativeTensor, pooled?: NativeTensor }>
  unet(
    id: number, sample: NativeTensor, timestep: number, context: NativeTensor, textEmbeds: NativeTensor, timeIds: Float32Array,
    cancel?: CancelToken
  ): Promise<NativeTensor>
  vaeDecode(id: number, latents: NativeTensor, unscale: boolean, cancel?: CancelToken): Promise<NativeTensor>
  vaeEncode(id: number, image: NativeTensor, cancel?: CancelToken): Promise<{ mean: NativeTensor, std: NativeTensor }>
  toRGB8(image: NativeTensor): Promise<Uint8Array>
  /** `weight`: stored as a model's weights are (the CPU backend: as setWeightPrecision says; a GPU: fp16). */
  fromHost(data: Float32Array, shape: number[], weight?: boolean): NativeTensor
  latentPreview(latents: NativeTensor, matrix: Float32Array, bias: Float32Array): Uint8Array
  toHost(t: NativeTensor): Float32Array
  lincomb(terms: Array<[number, NativeTensor]>): NativeTensor
  concat(a: NativeTensor, b: NativeTensor, axis: number): NativeTensor
  slice0(t: NativeTensor, start: number, count: number): NativeTensor
  /** Any backend op by name (tests compare backends with it); a null input is an absent bias. */
  op(name: string, inputs: Array<NativeTensor | null>, attributes: Record<string, unknown>): Promise<NativeTensor>
  /** The op run `reps` times in one job after two untimed runs: each run's device time (CUDA events on a GPU) and wall time. */
  timeOp(
    name: string, inputs: Array<NativeTensor | null>, attributes: Record<string, unknown>, reps: number
  ): Promise<{ deviceMs: number[], wallMs: number[] }>
  /** Values uniform in [-scale, scale) from a seeded hash, made natively and copied to the device once (benchmark inputs). */
  randomTensor(shape: number[], seed: number, scale: number): Promise<NativeTensor>
  bytesInUse(): number
  /** The engine's own device memory (a GPU's), or null where it runs in host memory. */
  deviceMemory(): { free: number, total: number } | null
  peakBytes(reset?: boolean): number
  /** One-line notices the backend has for the user (a missing optional library such as cuDNN), each returned once. */
  takeNotices(): string[]
  /** How the CPU backend stores the weights loaded from now on (other backends ignore it). */
  setWeightPrecision(precision: 'fp32' | 'bf16' | 'fp16'): void
  /** Time per op since the last call, once the queued work completes (waits); empty unless opened with PG25_PROFILE=1. */
  profile(): Record<string, { calls: number, ms: number }>
  dispose(): void
}

export interface RuntimeInfo {
  threads: number
  cpuKernel: 'avx512' | 'avx2' | 'generic'
  cpuIsa: 'avx512bf16' | 'avx512' | 'avx2' | 'generic'
  cudaCompiled: boolean
  /** the CUDA runtime compiled in ('12.8'), '' without CUDA */
  cudaRuntime: string
  cudaEmulated: boolean
  /** Which driver, GPUs and libraries were found, or what is missing. */
  cuda: string
  /** Builds with CUDA: the driver's, runtime's, cuBLASLt's and cuDNN's versions. */
  cudaLibraries?: string
  /** Builds with CUDA: cuDNN plans this process built so far, and the milliseconds they took. */
  cudnnPlans?: number
  cudnnPlanMs?: number
  /** Builds with CUDA: GEMMs cuBLASLt had no algorithm for, run on the backend's own kernel. */
  gemmFallbacks?: number
}

export interface SafetensorsEntry { name: string, dtype: string, shape: number[], begin: number, end: number }
export interface ParamRequest { name: string, shape: number[], linear: boolean }

export interface NativeAddon {
  Engine: new (device: string) => NativeEngine
  CancelToken: new () => CancelToken
  inspectSafetensors(path: string): Promise<SafetensorsEntry[]>
  readTensors(files: WeightFile[], requests: ParamRequest[], aliases?: WeightAlias[]): Promise<Float32Array[]>
  componentManifest(spec: ComponentSpec): ParamRequest[]
  runtimeInfo(): RuntimeInfo
  /** The codes native errors carry. */
  errorCodes(): string[]
}

// The addon's exports and the Engine's methods by name, checked against the interfaces above at compile time
// (a name missing from either side fails tsc) and against the loaded addon by test/native/binding-seam.test.ts.
type SameKeys<A, B> = [Exclude<A, B>, Exclude<B, A>] extends [never, never] ? true : false
export const ADDON_EXPORTS = ['Engine', 'CancelToken', 'inspectSafetensors', 'readTensors', 'componentManifest', 'runtimeInfo', 'errorCodes'] as const
export const ENGINE_MEMBERS = ['device', 'loadComponent', 'componentInfo', 'weightShapes', 'mergeLoRA', 'pageOut', 'encodeText', 'unet', 'vaeDecode', 'vaeEncode',
  'toRGB8', 'fromHost', 'latentPreview', 'toHost', 'lincomb', 'concat', 'slice0', 'op', 'timeOp', 'randomTensor', 'bytesInUse', 'deviceMemory',
  'peakBytes', 'takeNotices', 'setWeightPrecision', 'profile', 'dispose'] as const
export const SEAM_CHECKED: [
  SameKeys<keyof NativeAddon, typeof ADDON_EXPORTS[number]>,
  SameKeys<keyof NativeEngine, typeof ENGINE_MEMBERS[number]>
] = [true, true]

/**
 * Which binary loaded: a prebuilt one from prebuilds/ or from this platform's package (@pg25/native-linux-x64, ...), one built
 * from source (build/Release), the emulation build, or PG25_ADDON's.
 */
export type BinaryKind = 'prebuilt' | 'package' | 'source' | 'emulation' | 'custom'

let addon: NativeAddon | undefined
let loaded: { file: string, kind: BinaryKind } | undefined

/** The loaded addon's file and kind (loading it if needed). */
export function loadedBinary (): { file: string, kind: BinaryKind } {
  loadNative()
  return loaded!
}

/** Whether PG25_CUDA_EMULATION=1 asks for the CUDA emulation build (tests and CI; never shipped). */
export function emulationRequested (): boolean {
  return process.env.PG25_CUDA_EMULATION === '1'
}

export function loadNative (): NativeAddon {
  if (addon) return addon
  const root = path.join(__dirname, '..', '..')
  // PG25_ADDON points at another build of the addon (the sanitizer builds of `npm run test:asan`);
  // PG25_CUDA_EMULATION=1 loads the emulation build, whose 'cuda' device runs on the CPU (tests).
  const override = process.env.PG25_ADDON ?? (emulationRequested() ? path.join(root, 'build-emu', 'Release', 'pg25.node') : undefined)
  if (override === undefined) {
    const found = loadAddonFrom(root)
    addon = found.addon
    loaded = { file: found.file, kind: found.kind }
    return addon
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a path known only at run time
    addon = require(path.resolve(override)) as NativeAddon
    loaded = { file: path.resolve(override), kind: process.env.PG25_ADDON !== undefined ? 'custom' : 'emulation' }
  } catch (err) {
    const fix = emulationRequested() ? 'run `npm run build:emu` (PG25_CUDA_EMULATION=1 is set)' : 'build it or unset PG25_ADDON'
    throw new Pg25Error('PG25_INTERNAL', `the @pg25/native addon ${override} could not be loaded (${(err as Error).message}); ${fix}`, { cause: err })
  }
  return addon
}

const REBUILD = 'run `npm rebuild @pg25/native` (with pnpm: `pnpm approve-builds`, then `pnpm rebuild @pg25/native`; in a clone of the repository: `npm run build`)'

/**
 * Loads the addon of the package at `root`: build/Release (a build from source: the install step builds one only
 * where no binary fits), else this platform's binary package once a child process has loaded it without harm,
 * else prebuilds/<platform>-<arch> as node-gyp-build finds it. No usable binary at all means the install step
 * never ran (pnpm 10 and `--ignore-scripts` skip it) or the platform's binary was refused: `PG25_NO_BINARY`.
 */
export function loadAddonFrom (root: string): { addon: NativeAddon, file: string, kind: BinaryKind } {
  const source = path.join(root, 'build', 'Release', 'pg25.node')
  let refused = ''
  if (!fs.existsSync(source)) {
    const pkg = platformBinary(root)
    const why = pkg === undefined ? null : checkBinary(pkg, ADDON_EXPORTS)
    if (pkg !== undefined && why === null) return { ...requireAddon(pkg), kind: 'package' }
    if (pkg !== undefined) refused = ` The binary of ${platformPackage()} (${pkg}) was refused: ${why}.`
  }
  let file: string
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- untyped CommonJS module
    file = require('node-gyp-build').resolve(root)
  } catch (err) {
    throw new Pg25Error('PG25_NO_BINARY', `@pg25/native has no compiled addon for ${process.platform}-${process.arch} in ${root} ` +
      `(no build/Release/pg25.node, no usable ${platformPackage()} and no matching prebuilds/ binary): its install step did not run or failed ` +
      `(pnpm 10 and --ignore-scripts skip install steps).${refused} To build it, ${REBUILD}`, { cause: err })
  }
  return { ...requireAddon(file), kind: file.split(path.sep).includes('prebuilds') ? 'prebuilt' : 'source' }
}

function requireAddon (file: string): { addon: NativeAddon, file: string } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a path known only at run time
    return { addon: require(file) as NativeAddon, file }
  } catch (err) {
    throw new Pg25Error('PG25_INTERNAL', `the @pg25/native addon ${file} could not be loaded (${(err as Error).message}); ` +
      `to build one from source, ${REBUILD}`, { cause: err })
  }
}

/** The tensors a component's graph asks for, from its config alone (a dry build: nothing allocated). */
export function componentManifest (spec: ComponentSpec): ParamRequest[] {
  const addon = loadNative()
  try {
    return addon.componentManifest(spec)
  } catch (err) {
    throw fromNative(err)
  }
}
