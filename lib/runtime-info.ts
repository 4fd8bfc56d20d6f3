// runtimeInfo(): which binary is running and what it can use, for bug reports and for checking an
// install (prebuilt or built from source, the CUDA runtime it was compiled with, the CPU kernel).
import { loadedBinary, loadNative, type BinaryKind } from './native'
import { packageVersion } from './version'

export interface RuntimeInfo {
  /** this package's version */
  version: string
  /**
   * 'package' (the @pg25/native-<platform>-<arch> package), 'prebuilt' (prebuilds/), 'source' (built at install or in a clone),
   * 'emulation' (PG25_CUDA_EMULATION=1) or 'custom' (PG25_ADDON)
   */
  binary: BinaryKind
  /** the addon file that loaded */
  file: string
  /** the CPU backend's GEMM kernel on this CPU */
  cpuKernel: 'avx512' | 'avx2' | 'generic'
  /** the instruction set every CPU kernel was chosen for at run time (cpuid; PG25_CPU_ISA narrows it) */
  cpuIsa: 'avx512bf16' | 'avx512' | 'avx2' | 'generic'
  /** the CPU backend's threads */
  threads: number
  /** the CUDA runtime version compiled in ('12.8'), or null for a binary without the CUDA backend */
  cuda: string | null
  /** on this machine: the driver, GPUs and libraries found, or what is missing */
  cudaStatus: string
}

/**
 * What is running: the binary and its kind, its CUDA version, the CPU kernel.
 *
 * ```ts
 * import { runtimeInfo } from '@pg25/native'
 * console.log(runtimeInfo()) // { version: '0.1.0', binary: 'prebuilt', cuda: '12.8', cpuKernel: 'avx2', ... }
 * ```
 */
export function runtimeInfo (): RuntimeInfo {
  const info = loadNative().runtimeInfo()
  const { file, kind } = loadedBinary()
  return {
    version: packageVersion(),
    binary: kind,
    file,
    cpuKernel: info.cpuKernel,
    cpuIsa: info.cpuIsa,
    threads: info.threads,
    cuda: info.cudaCompiled && info.cudaRuntime !== '' ? info.cudaRuntime : null,
    cudaStatus: info.cuda
  }
}
