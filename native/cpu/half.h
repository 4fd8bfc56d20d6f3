// Half-width weight storage for the CPU backend (precision 'bf16' or 'fp16'): conversions between
// float32 and the two 16-bit formats, rounding to nearest even. Weights stored this way are widened
// back to float32 as the GEMM packs them (F16C / AVX-512 where present); everything else is float32.
#pragma once
#include <cstddef>
#include <cstdint>

namespace pg25::cpu {

enum class Half : int { None = 0, F16 = 1, BF16 = 2 };

// dst[i] = src[i] rounded to `kind` (to nearest even; fp16 beyond +-65504 becomes infinity, so callers refuse such
// weights first); and back.
void narrow(const float* src, uint16_t* dst, size_t n, Half kind);
void widen(const uint16_t* src, float* dst, size_t n, Half kind);

// The largest finite magnitude `kind` holds.
float half_max(Half kind);

// bf16 pairs along K for vdpbf16ps (gemm_kernels.h: MicroKernelBf16): `src` is a K block of a float32
// panel, kc rows of w values (k-major); `dst` gets (kc + 1) / 2 rows of w pairs, rows 2k and 2k + 1 side
// by side, rounded to nearest even, a zero in place of the row past an odd kc.
void bf16_pairs(const float* src, int64_t kc, int w, uint16_t* dst);

}  // namespace pg25::cpu
