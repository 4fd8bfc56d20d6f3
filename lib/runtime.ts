// One native engine (a backend and the components loaded into it), with the TensorOps the
// schedulers use. Tensors are NativeTensor handles: their memory stays in the backend.
import os from 'node:os'
import { Pg25Error, fromNative, native } from './errors'
import type { ComponentSource } from './model/model-dir'
import { loadNative, type NativeEngine, type NativeTensor } from './native'
import type { TensorOps } from './scheduler/tensor-ops'

/** 'auto' (the GPU when usable, else the CPU), 'cpu', 'cuda' (GPU 0) or 'cuda:N' (GPU N, as CUDA numbers them). */
export type Device = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`

const CUDA_INDEX = /^cuda:(0|[1-9]\d{0,2})$/

/** Whether `v` names a device `Runtime.open` takes (the CLI checks --device with it before loading). */
export function isDevice (v: unknown): v is Device {
  return v === 'auto' || v === 'cpu' || v === 'cuda' || (typeof v === 'string' && CUDA_INDEX.test(v))
}

/** How the notice of a fallback to the CPU begins (the CLI's -q drops it). */
export const CPU_FALLBACK = '@pg25/native: running on the CPU'
let fellBack = false

/**
 * The default for `onWarning`: a plain line on stderr, not process.emitWarning, whose "(node:PID) Warning"
 * and --trace-warnings hint would read as a fault in the caller's code. The CPU fallback is told once
 * per process: a server or script opening several pipelines learns nothing new from the second.
 */
export function writeNotice (message: string): void {
  if (message.startsWith(CPU_FALLBACK)) {
    if (fellBack) return
    fellBack = true
  }
  process.stderr.write(`${message}\n`)
}

export class Runtime {
  /** @internal the native engine (test and profiling hooks among its members); not part of the typed API */
  readonly engine: NativeEngine
  readonly ops: TensorOps<NativeTensor>
  private disposed = false
  private readonly notice: (msg: string) => void

  private constructor (engine: NativeEngine, notice: (msg: string) => void) {
    this.engine = engine
    this.notice = notice
    this.ops = {
      lincomb: terms => this.call(() => engine.lincomb(terms)),
      release: t => t.dispose()
    }
  }

  /**
   * Opens a backend. `auto` takes GPU 0 when usable, else the CPU with a notice of what was missing;
   * 'cuda:N' pins GPU N and is refused, naming the GPUs there are, when N does not exist.
   */
  static open (device: Device, notice: (msg: string) => void): Runtime {
    const addon = loadNative()
    if (!isDevice(device)) {
      throw new Pg25Error('PG25_INVALID_ARGUMENT', `device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index), got ${JSON.stringify(device)}`)
    }
    if (device === 'cpu') return new Runtime(new addon.Engine('cpu'), notice)
    try {
      const rt = new Runtime(new addon.Engine(device === 'auto' ? 'cuda' : device), notice)
      if (addon.runtimeInfo().cudaEmulated) notice(`@pg25/native: device '${rt.device}' is the CPU emulation of CUDA (PG25_CUDA_EMULATION=1), for tests: correct, not fast`)
      rt.passNotices()
      return rt
    } catch (err) {
      const e = fromNative(err)
      if (device !== 'auto') throw e
      notice(`${CPU_FALLBACK} (${e.message}); device 'cpu' (--device cpu) skips looking for a GPU`)
      return new Runtime(new addon.Engine('cpu'), notice)
    }
  }

  /**
   * @internal Hands the backend's new one-line notices (a missing library, a CUDA graph that could not be
   * recorded) to the notice callback.
   */
  passNotices (): void {
    if (this.disposed) return
    for (const n of this.engine.takeNotices()) this.notice(`@pg25/native: ${n}`)
  }

  get device (): string {
    return this.engine.device
  }

  /** @internal runs a synchronous native call, its errors as Pg25Errors */
  call<T> (fn: () => T): T {
    if (this.disposed) throw new Pg25Error('PG25_DISPOSED', 'the pipeline was disposed')
    try {
      return fn()
    } catch (err) {
      throw fromNative(err)
    }
  }

  /**
   * @internal
   * Loads a component from its weight files, or, given `syntheticSeed`, on deterministic synthetic weights (no files).
   * `onBytes` gets the bytes read so far (as the files store them) after each tensor.
   */
  async load (kind: 'text_encoder' | 'unet' | 'vae' | 'vae_encoder', src: ComponentSource, syntheticSeed?: number, onBytes?: (bytes: number) => void): Promise<number> {
    const spec = { kind, className: src.className, configPath: src.configPath, configText: src.configText }
    return await native(async () => syntheticSeed === undefined ?
        await this.engine.loadComponent(spec, src.files, src.aliases, onBytes && { onBytes }) :
        await this.engine.loadComponent(spec, [], [], { syntheticSeed }))
  }

  fromHost (data: Float32Array, shape: number[]): NativeTensor {
    return this.call(() => this.engine.fromHost(data, shape))
  }

  /** Bytes free where this engine's tensors live: the GPU's memory, or the host's. */
  freeMemory (): number {
    return this.engine.deviceMemory()?.free ?? os.freemem()
  }

  toHost (t: NativeTensor): Float32Array {
    return this.call(() => this.engine.toHost(t))
  }

  dispose (): void {
    if (this.disposed) return
    this.disposed = true
    this.engine.dispose()
  }
}

/** Disposes every tensor given (skipping undefined), for tidy step loops. */
export function release (...ts: Array<NativeTensor | undefined>): void {
  for (const t of ts) t?.dispose()
}
