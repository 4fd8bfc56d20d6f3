// Tensor-core multiply-accumulate: mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32, one
// warp computing D[16x8] = A[16x16] B[16x8] + C in fp32. Every lane holds fragments laid out as the PTX
// ISA documents (groupID g = lane / 4, t = lane % 4; two 16-bit values per register, the lower index in
// the low half):
//   A: regs {a0a1, a2a3, a4a5, a6a7}; a_i at row g (+8 for i = 2, 3, 6, 7), col 2t + (i & 1) (+8 for i >= 4)
//   B: regs {b0b1, b2b3}; b_i at row 2t + (i & 1) (+8 for i >= 2), col g
//   C, D: c_i at row g (+8 for i >= 2), col 2t + (i & 1)
// The CPU emulation (native/cuda/emu) assembles the matrices from these layouts, so a kernel that packs
// its fragments wrongly fails its tests there.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#ifdef PG25_CUDA_EMULATION
namespace pg25::emu {
void mma_m16n8k16(float* d, const uint32_t* a, const uint32_t* b, const float* c, bool bf16);
void ldmatrix_x4(uint32_t* r, const void* row, bool trans);
}  // namespace pg25::emu
#endif

namespace pg25::cuda {

template <bool BF16>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4]) {
#ifdef PG25_CUDA_EMULATION
  pg25::emu::mma_m16n8k16(d, a, b, c, BF16);
#else
  if constexpr (BF16)
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
  else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

// ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16: four 8x8 matrices of 16-bit values from shared
// memory in one instruction, the rows of matrix i addressed by lanes 8i..8i+7 (`row`: 8 values, 16-byte
// aligned). Lane l receives in r[i] row g = l/4, columns 2t and 2t+1 (t = l%4) of matrix i: the B
// fragment above when the matrix is held as B's columns (K's rows for Q K^T). With TRANS it receives
// column g, rows 2t and 2t+1: the B fragment when the matrix is held as B's rows (V's rows for P V).
template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
#ifdef PG25_CUDA_EMULATION
  pg25::emu::ldmatrix_x4(r, row, TRANS);
#else
  unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(row));
  if constexpr (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
#endif
}

}  // namespace pg25::cuda
