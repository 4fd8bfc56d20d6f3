// The GEMM's innermost step, one per instruction set, chosen once at run time from the processor's
// features: acc[MR x NR] = sum over kc of packed A panel (kc x MR) times packed B panel (kc x NR).
// The panel widths belong to the kernel, so packed weights are laid out for the kernel in use.
#pragma once
#include <cstdint>

namespace pg25::cpu {

// Where one micro-tile's sums go: c[i * ldc + j] for i < rows, j < cols, as
// (add_c ? c : 0) + sum + row_bias[i] + col_bias[j] + residual[i * ldc + j], each term optional, added
// in that order.
struct Tile {
  float* c;
  int64_t ldc;
  int rows, cols;
  bool add_c;
  const float* row_bias;
  const float* col_bias;
  const float* residual;
};

struct MicroKernel {
  const char* name;  // "avx512", "avx2" or "generic"
  int mr, nr;
  // sum[i][j] = sum_k a[k * mr + i] * b[k * nr + j], k in [0, kc) in order, stored as `t` says.
  void (*run)(int64_t kc, const float* a, const float* b, const Tile& t);
};

// The kernel for cpu_isa() (isa.h: PG25_CPU_ISA=avx2|generic picks a narrower one).
const MicroKernel& micro_kernel();

// The bf16 form (AVX512-BF16's vdpbf16ps), for products with a bf16 weight: both panels hold bf16 pairs
// along K, [kc2][width][2] (half.h: bf16_pairs), and each instruction multiplies two K steps and adds
// them into the float32 sums. Same panel widths as the AVX-512 kernel.
struct MicroKernelBf16 {
  int mr, nr;
  void (*run)(int64_t kc2, const uint16_t* a, const uint16_t* b, const Tile& t);
};
// Null where cpu_bf16_dot() is false or the compiler has no AVX512-BF16 intrinsics (MSVC builds): bf16
// weights are then widened to float32 for the float32 kernel.
const MicroKernelBf16* micro_kernel_bf16();

}  // namespace pg25::cpu
