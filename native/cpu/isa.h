// The instruction sets the CPU backend's kernels use, chosen once at run time from cpuid, so GCC,
// Clang, MinGW and MSVC build the same code (no ifunc or target_clones, which exist only for ELF).
// Every kernel table in native/cpu is indexed by cpu_isa(); PG25_CPU_ISA=avx512|avx2|generic narrows it
// (tests, comparisons), and avx512bf16 names the default on a processor with AVX512-BF16.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#define PG25_X86 1
#endif

// A function compiled for an instruction set beyond the baseline. MSVC has no such attribute: there
// the intrinsics compile as they are and plain loops stay at the baseline.
#if defined(__GNUC__) || defined(__clang__)
#define PG25_TARGET(features) __attribute__((target(features)))
#else
#define PG25_TARGET(features)
#endif

namespace pg25::cpu {

enum class Isa : int { Generic = 0, Avx2 = 1, Avx512 = 2 };
constexpr int kIsaCount = 3;

// What the processor and the OS (saved register state, XCR0) offer.
struct CpuFeatures {
  bool avx2_fma = false;    // AVX2 and FMA (x86-64-v3's vector part)
  bool avx512f = false;     // with the OS saving the zmm and mask registers
  bool avx512bf16 = false;  // vdpbf16ps: bf16 pairs multiplied and summed into float32
  bool f16c = false;        // float16 <-> float32 conversion
};
const CpuFeatures& cpu_features();

// The level the kernels run at: the best the processor has, narrowed by PG25_CPU_ISA.
Isa cpu_isa();
// Whether the bf16 GEMM uses vdpbf16ps (AVX-512 chosen, AVX512-BF16 present and not narrowed away).
bool cpu_bf16_dot();
// "avx512bf16", "avx512", "avx2" or "generic": what cpu_isa() and cpu_bf16_dot() chose.
const char* cpu_isa_name();

}  // namespace pg25::cpu
