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

}  // namespace pg25::cpu
