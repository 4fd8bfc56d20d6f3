// Single-precision matrix product for the CPU backend: cache-blocked and multi-threaded over the
// micro-kernel picked for this processor (gemm_kernels.h). Either operand may be packed once ahead of
// time (the model's weights), and B may be read straight from an NCHW image as im2col columns, packed
// tile by tile, so no full im2col matrix is ever built.
//
// The sum over K runs in the same order whatever the thread count or tiling (blocks of KC, in order),
// so results do not depend on PG25_THREADS.
#pragma once
#include <cstddef>
#include <cstdint>

#include "half.h"

namespace pg25::cpu {

// A row-major [rows, K] matrix in the kernel's panel layout: panels of `width` rows (the last one
// zero-padded), each stored k-major ([K][width]). Width mr makes an A operand, nr a B operand given
// as B^T (a linear layer's weight [N, K]).
size_t packed_floats(int64_t rows, int64_t K, int width);
void pack_panels(const float* src, int64_t rows, int64_t K, int width, float* dst);
void unpack_panels(const float* packed, int64_t rows, int64_t K, int width, float* dst);
// The same at half width (a weight stored as bf16 or fp16). `paired` (a bf16 weight for the AVX512-BF16
// kernel, bf16_paired()): each panel holds K rounded up to even, as pairs of K steps ([K / 2][width][2],
// half.h: bf16_pairs), so the kernel reads the weight as it is stored.
size_t packed_halves(int64_t rows, int64_t K, int width, bool paired);
void pack_panels(const uint16_t* src, int64_t rows, int64_t K, int width, uint16_t* dst, bool paired);
void unpack_panels(const uint16_t* packed, int64_t rows, int64_t K, int width, uint16_t* dst, bool paired);
// Whether bf16 weights are packed paired: the AVX512-BF16 kernel runs here.
bool bf16_paired();

// The im2col view of one image x [C, H, W] for a kh x kw convolution: B(k, p) with k = (c, ky, kx)
// and p = (oy, ox) over the Ho x Wo output.
struct ConvInput {
  const float* x;
  int64_t C, H, W, kh, kw, stride, pad, Ho, Wo;
  int64_t up = 1;  // 2: x is [C, H/2, W/2], read as its nearest 2x upsampling (stride 1 only)
};

// A K block [k0, k0 + kc) of columns [j0, j0 + nc) of a stride-1 convolution's im2col view as the bf16 pairs the
// AVX512-BF16 kernel reads (panels of nr, (kc + 1) / 2 rows of pairs each): what pack_b_conv followed by bf16_pairs
// gives, bit for bit. False (nothing written) for other convolutions and where that kernel does not run.
bool pack_conv_bf16_pairs(const ConvInput& cv, int64_t N, int64_t j0, int64_t nc, int64_t k0, int64_t kc, int nr, uint16_t* dst);

// A(i, k): prepacked panels of width mr (`packed`, or `packed_half` at half width: widened to float32
// K block by K block as the product reads them, or read as they are by the bf16 kernel), or A[i * ld + k].
struct OperandA {
  const float* plain = nullptr;
  int64_t ld = 0;
  const float* packed = nullptr;
  const uint16_t* packed_half = nullptr;
  Half half = Half::None;
};
// B(k, j): prepacked panels of width nr (`packed` or `packed_half`), a convolution's input (`conv`), or plain:
// trans ? B[j * ld + k] : B[k * ld + j].
struct OperandB {
  const float* plain = nullptr;
  int64_t ld = 0;
  bool trans = false;
  const float* packed = nullptr;
  const uint16_t* packed_half = nullptr;
  Half half = Half::None;
  const ConvInput* conv = nullptr;
};
// C = A B + (accumulate ? C : 0) + row_bias[i] + col_bias[j] + residual[i * ldc + j] (each optional).
struct Epilogue {
  const float* row_bias = nullptr;
  const float* col_bias = nullptr;
  const float* residual = nullptr;
  bool accumulate = false;
};

void gemm(int64_t M, int64_t N, int64_t K, const OperandA& a, const OperandB& b, float* C, int64_t ldc, const Epilogue& epi,
          bool threaded = true);

// All of a plain B (N columns, K rows) in the prepacked layout (packed_floats(N, K, nr) floats), for
// an operand that several products read (attention's keys and values, one head at a time).
void pack_b_full(const OperandB& b, int64_t N, int64_t K, float* dst);

// The plain form: C[M, N] = A[M, K] * B + (accumulate ? C : 0) + bias[j].
void sgemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, bool b_trans, float* C, int64_t ldc,
           bool accumulate, const float* bias, bool threaded = true);

}  // namespace pg25::cpu
