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
#include <cstdint>

#ifdef PG25_CUDA_EMULATION
namespace pg25::emu {
void mma_m16n8k16(float* d, const uint32_t* a, const uint32_t* b, const float* c, bool bf16);
}
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

}  // namespace pg25::cuda
