// Launchers for the CUDA backend's kernels (16-bit storage, fp32 arithmetic). Each has a float32 twin
// in native/cpu/cpu_backend.cc that the GPU check compares it against.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace pg25::cuda {

// `wide` selects bf16 storage (float32's exponent range) over fp16 for the arithmetic kernels; data
// movement (im2col, pad, upsample, transpose, embedding) copies 16-bit values of either type.
void from_f32(const float* x, void* y, int64_t n, bool wide, cudaStream_t s);
void to_f32(const void* x, float* y, int64_t n, bool wide, cudaStream_t s);
// fp16 <-> bf16; x_wide says which way.
void convert(const void* x, bool x_wide, void* y, int64_t n, cudaStream_t s);
// y = sum_k c[k] x[k], up to 8 terms.
void lincomb(int terms, const void* const* x, const float* c, void* y, int64_t n, bool wide, cudaStream_t s);
void add(const void* a, const void* b, void* y, int64_t n, bool wide, cudaStream_t s);
// D[M, N] = alpha A[M, K] op(B) (+ beta C) (+ bias[N]), row-major with leading dimensions and batch
// strides in elements (C, when given, shares D's), B [K, N] or, b_trans, [N, K]; C and bias may be null.
// Simple and slow: for shapes cuBLASLt has no algorithm for.
struct SimtGemm {
  int64_t M, N, K, lda, ldb, ldc, stride_a, stride_b, stride_c, batch;
  bool b_trans;
  float alpha, beta;
};
void gemm_simt(const SimtGemm& g, const void* a, const void* b, const void* c, void* d, const void* bias, bool wide, cudaStream_t s);
enum class Unary { Silu, Gelu, QuickGelu };
void unary(Unary op, const void* x, void* y, int64_t n, bool wide, cudaStream_t s);
void geglu(const void* x, void* y, int64_t rows, int64_t n, bool wide, cudaStream_t s);
// Image kernels take `nhwc`: images [B, C, HW] when false, [B, HW, C] (channels last) when true.
// y = x * scale[c] + shift[c] (device float arrays)
void channel_affine(const void* x, const float* scale, const float* shift, void* y, int64_t B, int64_t C, int64_t HW, bool nhwc, bool wide,
                    cudaStream_t s);
// y += bias[C] (when given) + residual (when given): a convolution's one pass after its GEMMs.
void conv_epilogue(void* y, const void* bias, const void* residual, int64_t B, int64_t C, int64_t HW, bool nhwc, bool wide, cudaStream_t s);
// NHWC columns [pc, kh * kw * C] (rows (ky, kx, c), a KRSC kernel's order) for output pixels
// [p0, p0 + pc) of the whole batch (Ho x Wo per image).
void im2col_nhwc(const void* x, void* col, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t stride, int64_t pad, int64_t Ho,
                 int64_t Wo, int64_t p0, int64_t pc, cudaStream_t s);
// NCHW columns [K = C*kh*kw, P] for output pixels [p0, p0 + pc) of one image.
void im2col(const void* x, void* col, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t stride, int64_t pad, int64_t Wo,
            int64_t p0, int64_t pc, cudaStream_t s);
// GroupNorm in three passes (partial moments per chunk of each group, their combination, the
// normalisation), so a group of millions of values is spread over many blocks. The plan sizes the
// chunks and the fp32 scratch the passes share.
struct GroupNormPlan {
  int chunks = 1;
  int64_t len = 0, scratch_floats = 0;
};
GroupNormPlan plan_group_norm(int64_t B, int64_t C, int64_t HW, int groups);
// `add` (or null): [B, C] added to x's channels first, in the same passes (a ResNet block's time embedding).
void group_norm(const void* x, const void* add, const void* gamma, const void* beta, void* y, int64_t B, int64_t C, int64_t HW, int groups,
                float eps, bool silu, bool wide, const GroupNormPlan& plan, float* scratch, cudaStream_t s);
// GroupNorm of NHWC x [B, HW, C]: pass 1 reduces a stretch of rows (pixels) of one image per block, each
// thread along its own channels, to per-group moments; passes 2 and 3 as above.
// (at most this many channels, in 36 KB of shared memory: SDXL's widest GroupNorm, on up_blocks.0's
// joined skip, has 2560; larger images take the NCHW kernels through a transpose)
constexpr int64_t kGroupNormNhwcMaxChannels = 3072;
GroupNormPlan plan_group_norm_nhwc(int64_t B, int64_t C, int64_t HW, int groups);
void group_norm_nhwc(const void* x, const void* add, const void* gamma, const void* beta, void* y, int64_t B, int64_t C, int64_t HW,
                     int groups, float eps, bool silu, bool wide, const GroupNormPlan& plan, float* scratch, cudaStream_t s);
void layer_norm(const void* x, const void* gamma, const void* beta, void* y, int64_t rows, int64_t C, float eps, bool wide, cudaStream_t s);
// q [B, Nq, C], k and v [B, Nk, C], heads split C; online softmax, no score matrix in memory.
void attention(const void* q, const void* k, const void* v, void* y, int64_t B, int64_t Nq, int64_t Nk, int64_t C, int heads, bool causal,
               bool wide, cudaStream_t s);
void upsample_nearest(const void* x, void* y, int64_t B, int64_t C, int64_t H, int64_t W, int64_t oh, int64_t ow, bool nhwc,
                      cudaStream_t s);
void pad2d(const void* x, void* y, int64_t B, int64_t C, int64_t H, int64_t W, int left, int top, int64_t Ho, int64_t Wo, bool nhwc,
           cudaStream_t s);
// x [src_batches, R, Cc] -> y [B, Cc, R], output batch b from input batch b % src_batches (B a multiple
// of it: the batch repeated). [B, C, HW] <-> [B, HW, C].
void transpose_last2(const void* x, void* y, int64_t B, int64_t src_batches, int64_t R, int64_t Cc, cudaStream_t s);
void embedding(const int32_t* ids, const void* table, void* y, int64_t n, int64_t C, cudaStream_t s);
// RGB bytes from an image of 3 channels in [-1, 1]
void to_rgb8(const void* x, uint8_t* y, int64_t B, int64_t HW, bool nhwc, bool wide, cudaStream_t s);
// RGB bytes from C channels through rgb = M x + bias (M 3 x C, device floats)
void latent_rgb(const void* x, const float* m, const float* bias, uint8_t* y, int64_t B, int64_t C, int64_t HW, bool nhwc, bool wide,
                cudaStream_t s);

}  // namespace pg25::cuda
