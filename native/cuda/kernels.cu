#include <type_traits>

#include "kernels.h"
#include "launch.h"
#include "storage.h"

namespace pg25::cuda {
namespace {

// Arithmetic kernels are templates over the 16-bit storage type T (__half, or __nv_bfloat16 for
// components that need float32's exponent range); data movement copies 16-bit payloads as `h`.
__device__ __forceinline__ float silu_f(float v) { return v / (1.f + __expf(-v)); }
__device__ __forceinline__ float gelu_f(float v) { return 0.5f * v * (1.f + erff(v * 0.70710678118654752f)); }

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
unsigned grid(int64_t n, int block = 256) {
  int64_t g = (n + block - 1) / block;
  return unsigned(g < 1 ? 1 : (g > 65535 * 8 ? 65535 * 8 : g));
}
#define GRID_STRIDE(i, n) for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

template <class T>
__global__ void k_from_f32(const float* x, T* y, int64_t n) {
  GRID_STRIDE(i, n) st(y, i, x[i]);
}
template <class T>
__global__ void k_to_f32(const T* x, float* y, int64_t n) {
  GRID_STRIDE(i, n) y[i] = ld(x, i);
}
template <class A, class B>
__global__ void k_convert(const A* x, B* y, int64_t n) {
  GRID_STRIDE(i, n) st(y, i, ld(x, i));
}

template <class T>
struct Terms {
  const T* x[8];
  float c[8];
};
// The loop is unrolled over all 8 slots so every index into the parameters is a constant: a loop
// bounded by `terms` indexes them at run time, which copies the struct to local memory (96 bytes of stack).
template <class T>
__global__ void k_lincomb(Terms<T> t, int terms, T* y, int64_t n) {
  GRID_STRIDE(i, n) {
    float acc = 0.f;
#pragma unroll
    for (int k = 0; k < 8; k++)
      if (k < terms) acc += t.c[k] * ld(t.x[k], i);
    st(y, i, acc);
  }
}
// D = alpha A op(B) (+ beta C) (+ bias[n]), row-major, batched over blockIdx.z by element strides: the
// GEMM of last resort where cuBLASLt offers no algorithm. 16x16 tiles through shared memory, fp32 sums.
constexpr int kTile = 16;
template <class T>
__global__ void k_gemm_simt(SimtGemm g, const T* a, const T* b, const T* c, T* d, const T* bias) {
  __shared__ float ta[kTile][kTile + 1], tb[kTile][kTile + 1];
  int64_t z = blockIdx.z;
  a += z * g.stride_a;
  b += z * g.stride_b;
  if (c) c += z * g.stride_c;
  d += z * g.stride_c;
  int tx = int(threadIdx.x), ty = int(threadIdx.y);
  int64_t row = int64_t(blockIdx.y) * kTile + ty, col = int64_t(blockIdx.x) * kTile + tx;
  float acc = 0.f;
  for (int64_t k0 = 0; k0 < g.K; k0 += kTile) {
    int64_t ka = k0 + tx, kb = k0 + ty;
    ta[ty][tx] = row < g.M && ka < g.K ? ld(a, row * g.lda + ka) : 0.f;
    tb[ty][tx] = col < g.N && kb < g.K ? ld(b, g.b_trans ? col * g.ldb + kb : kb * g.ldb + col) : 0.f;
    __syncthreads();
    for (int k = 0; k < kTile; k++) acc += ta[ty][k] * tb[k][tx];
    __syncthreads();
  }
  if (row >= g.M || col >= g.N) return;
  float v = g.alpha * acc;
  if (c) v += g.beta * ld(c, row * g.ldc + col);
  if (bias) v += ld(bias, col);
  st(d, row * g.ldc + col, v);
}

template <class T>
__global__ void k_add(const T* a, const T* b, T* y, int64_t n) {
  GRID_STRIDE(i, n) st(y, i, ld(a, i) + ld(b, i));
}
template <class T>
__global__ void k_unary(int op, const T* x, T* y, int64_t n) {
  GRID_STRIDE(i, n) {
    float v = ld(x, i);
    st(y, i, op == 0 ? silu_f(v) : op == 1 ? gelu_f(v) : v / (1.f + __expf(-1.702f * v)));
  }
}
template <class T>
__global__ void k_geglu(const T* x, T* y, int64_t rows, int64_t n) {
  GRID_STRIDE(i, rows * n) {
    int64_t r = i / n, j = i % n;
    st(y, i, ld(x, r * 2 * n + j) * gelu_f(ld(x, r * 2 * n + n + j)));
  }
}
// Eight outputs per thread, each half of the row read with 16-byte loads (n % 8 == 0, aligned rows).
template <class T>
__global__ void k_geglu_vec(const T* x, T* y, int64_t rows, int64_t n) {
  int64_t per_row = n / 8;
  GRID_STRIDE(v, rows * per_row) {
    int64_t r = v / per_row, j = v % per_row * 8;
    T a[8], g[8], out[8];
    load16(x + r * 2 * n + j, a);
    load16(x + r * 2 * n + n + j, g);
    for (int e = 0; e < 8; e++) st(out, e, ld(a, e) * gelu_f(ld(g, e)));
    store16(y + r * n + j, out);
  }
}
// Per-channel kernels take `inner`, the distance between channels in elements: HW for NCHW, 1 for NHWC,
// so element i is channel (i / inner) % C of image i / (C * HW) either way.
template <class T>
__global__ void k_channel_affine(const T* x, const float* sc, const float* sh, T* y, int64_t C, int64_t inner, int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t c = (i / inner) % C;
    st(y, i, ld(x, i) * sc[c] + sh[c]);
  }
}
template <class T>
__global__ void k_conv_epilogue(T* y, const T* b, const T* r, int64_t C, int64_t inner, int64_t n) {
  GRID_STRIDE(i, n) {
    float v = ld(y, i);
    if (b) v += ld(b, (i / inner) % C);
    if (r) v += ld(r, i);
    st(y, i, v);
  }
}
// NHWC columns: row p (an output pixel of the batch) holds its receptive field as (ky, kx, c), the order
// of a KRSC kernel's rows, so the GEMM against the kernel needs no reordering and the reads of x run
// along channels. V is one 16-bit value, or eight (uint4) when C % 8 == 0; C counts V's.
template <class V>
__global__ void k_im2col_nhwc(const V* x, V* col, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
                              int64_t Ho, int64_t Wo, int64_t p0, int64_t n) {
  int64_t K = kh * kw * C;
  GRID_STRIDE(i, n) {
    int64_t p = p0 + i / K, r = i % K;
    int64_t c = r % C, kx = (r / C) % kw, ky = r / (C * kw);
    int64_t b = p / (Ho * Wo), oy = (p / Wo) % Ho, ox = p % Wo;
    int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
    col[i] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? x[((b * H + iy) * W + ix) * C + c] : V{};
  }
}
__global__ void k_im2col(const h* x, h* col, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
                         int64_t Wo, int64_t p0, int64_t pc) {
  GRID_STRIDE(i, C * kh * kw * pc) {
    int64_t r = i / pc, p = i % pc;
    int64_t c = r / (kh * kw), ky = (r / kw) % kh, kx = r % kw;
    int64_t oy = (p0 + p) / Wo, ox = (p0 + p) % Wo;
    int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
    col[i] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? x[(c * H + iy) * W + ix] : __float2half(0.f);
  }
}

// Spatial moves copy runs of `inner` V's per pixel: one value of one plane (NCHW, planes = B * C,
// inner = 1), or a pixel's channels (NHWC, planes = B, inner = C, eight at a time when C % 8 == 0).
template <class V>
__global__ void k_upsample(const V* x, V* y, int64_t H, int64_t W, int64_t oh, int64_t ow, float sy, float sx, int64_t inner, int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t e = i % inner, q = i / inner;
    int64_t bc = q / (oh * ow), yy = (q / ow) % oh, xx = q % ow;
    int64_t iy = min(H - 1, int64_t(float(yy) * sy)), ix = min(W - 1, int64_t(float(xx) * sx));
    y[i] = x[((bc * H + iy) * W + ix) * inner + e];
  }
}
template <class V>
__global__ void k_pad(const V* x, V* y, int64_t H, int64_t W, int left, int top, int64_t Ho, int64_t Wo, int64_t inner, int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t e = i % inner, q = i / inner;
    int64_t bc = q / (Ho * Wo), yy = (q / Wo) % Ho - top, xx = q % Wo - left;
    y[i] = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? x[((bc * H + yy) * W + xx) * inner + e] : V{};
  }
}
// y[b, c, r] = x[b % src_batches, r, c], over the outputs (writes coalesced).
__global__ void k_transpose(const h* x, h* y, int64_t R, int64_t Cc, int64_t src_batches, int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t b = i / (R * Cc), c = (i / R) % Cc, r = i % R;
    y[i] = x[((b % src_batches) * R + r) * Cc + c];
  }
}
__global__ void k_embedding(const int32_t* ids, const h* table, h* y, int64_t n, int64_t C) {
  GRID_STRIDE(i, n * C) y[i] = table[int64_t(ids[i / C]) * C + i % C];
}
template <class T>
__global__ void k_to_rgb8(const T* x, uint8_t* y, int64_t HW, bool nhwc, int64_t n) {
  GRID_STRIDE(i, n) {  // i over B*HW*3 in NHWC order
    int64_t b = i / (HW * 3), p = (i / 3) % HW, c = i % 3;
    float v = ld(x, nhwc ? i : (b * 3 + c) * HW + p) / 2.f + 0.5f;
    v = isnan(v) ? 0.f : fminf(1.f, fmaxf(0.f, v));
    y[i] = uint8_t(__float2int_rn(v * 255.f));
  }
}
template <class T>
__global__ void k_latent_rgb(const T* x, const float* m, const float* bias, uint8_t* y, int64_t C, int64_t HW, bool nhwc, int64_t n) {
  GRID_STRIDE(i, n) {
    int64_t b = i / (HW * 3), p = (i / 3) % HW, c = i % 3;
    float v = bias[c];
    for (int64_t k = 0; k < C; k++) v += m[c * C + k] * ld(x, nhwc ? (b * HW + p) * C + k : (b * C + k) * HW + p);
    v = isnan(v) ? 0.f : fminf(1.f, fmaxf(0.f, (v + 1.f) / 2.f));
    y[i] = uint8_t(__float2int_rn(v * 255.f));
  }
}

}  // namespace

#define H(p) static_cast<const __half*>(p)
#define HM(p) static_cast<__half*>(p)
#define C(p) static_cast<const T*>(p)
#define M(p) static_cast<T*>(p)

void from_f32(const float* x, void* y, int64_t n, bool wide, cudaStream_t s) {
  BY_TYPE(wide, PG25_LAUNCH(k_from_f32<T>, grid(n), 256, 0, s)(x, M(y), n));
}
void to_f32(const void* x, float* y, int64_t n, bool wide, cudaStream_t s) {
  BY_TYPE(wide, PG25_LAUNCH(k_to_f32<T>, grid(n), 256, 0, s)(C(x), y, n));
}
void convert(const void* x, bool x_wide, void* y, int64_t n, cudaStream_t s) {
  if (x_wide) PG25_LAUNCH(k_convert<__nv_bfloat16 BY_COMMA __half>, grid(n), 256, 0, s)(static_cast<const __nv_bfloat16*>(x), HM(y), n);
  else PG25_LAUNCH(k_convert<__half BY_COMMA __nv_bfloat16>, grid(n), 256, 0, s)(H(x), static_cast<__nv_bfloat16*>(y), n);
}
void lincomb(int terms, const void* const* x, const float* c, void* y, int64_t n, bool wide, cudaStream_t s) {
  BY_TYPE(wide, {
    Terms<T> t{};
    for (int i = 0; i < terms && i < 8; i++) {
      t.x[i] = C(x[i]);
      t.c[i] = c[i];
    }
    PG25_LAUNCH(k_lincomb<T>, grid(n), 256, 0, s)(t, terms < 8 ? terms : 8, M(y), n);
  });
}
void gemm_simt(const SimtGemm& g, const void* a, const void* b, const void* c, void* d, const void* bias, bool wide, cudaStream_t s) {
  dim3 blocks(unsigned((g.N + kTile - 1) / kTile), unsigned((g.M + kTile - 1) / kTile), unsigned(g.batch));
  BY_TYPE(wide, PG25_LAUNCH(k_gemm_simt<T>, blocks, dim3(kTile, kTile), 0, s)(g, C(a), C(b), C(c), M(d), C(bias)));
}
void add(const void* a, const void* b, void* y, int64_t n, bool wide, cudaStream_t s) {
  BY_TYPE(wide, PG25_LAUNCH(k_add<T>, grid(n), 256, 0, s)(C(a), C(b), M(y), n));
}
void unary(Unary op, const void* x, void* y, int64_t n, bool wide, cudaStream_t s) {
  BY_TYPE(wide, PG25_LAUNCH(k_unary<T>, grid(n), 256, 0, s)(int(op), C(x), M(y), n));
}
void geglu(const void* x, void* y, int64_t rows, int64_t n, bool wide, cudaStream_t s) {
  if (n % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0)
    BY_TYPE(wide, PG25_LAUNCH(k_geglu_vec<T>, grid(rows * n / 8), 256, 0, s)(C(x), M(y), rows, n));
  else BY_TYPE(wide, PG25_LAUNCH(k_geglu<T>, grid(rows * n), 256, 0, s)(C(x), M(y), rows, n));
}
void channel_affine(const void* x, const float* scale, const float* shift, void* y, int64_t B, int64_t Ch, int64_t HW, bool nhwc, bool wide,
                    cudaStream_t s) {
  BY_TYPE(wide, PG25_LAUNCH(k_channel_affine<T>, grid(B * Ch * HW), 256, 0, s)(C(x), scale, shift, M(y), Ch, nhwc ? 1 : HW, B * Ch * HW));
}
void conv_epilogue(void* y, const void* bias, const void* residual, int64_t B, int64_t Ch, int64_t HW, bool nhwc, bool wide,
                   cudaStream_t s) {
  BY_TYPE(wide, PG25_LAUNCH(k_conv_epilogue<T>, grid(B * Ch * HW), 256, 0, s)(M(y), C(bias), C(residual), Ch, nhwc ? 1 : HW, B * Ch * HW));
}
void im2col_nhwc(const void* x, void* col, int64_t Ch, int64_t Hh, int64_t W, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
                 int64_t Ho, int64_t Wo, int64_t p0, int64_t pc, cudaStream_t s) {
  if (Ch % 8 == 0 && aligned16(x) && aligned16(col)) {
    int64_t n = pc * kh * kw * Ch / 8;
    PG25_LAUNCH(k_im2col_nhwc<uint4>, grid(n), 256, 0, s)
    (static_cast<const uint4*>(x), static_cast<uint4*>(col), Ch / 8, Hh, W, kh, kw, stride, pad, Ho, Wo, p0, n);
  } else {
    int64_t n = pc * kh * kw * Ch;
    PG25_LAUNCH(k_im2col_nhwc<h>, grid(n), 256, 0, s)(H(x), HM(col), Ch, Hh, W, kh, kw, stride, pad, Ho, Wo, p0, n);
  }
}
void im2col(const void* x, void* col, int64_t Ch, int64_t Hh, int64_t W, int64_t kh, int64_t kw, int64_t stride, int64_t pad, int64_t Wo,
            int64_t p0, int64_t pc, cudaStream_t s) {
  PG25_LAUNCH(k_im2col, grid(Ch * kh * kw * pc), 256, 0, s)(H(x), HM(col), Ch, Hh, W, kh, kw, stride, pad, Wo, p0, pc);
}
// Runs `launch(x, y, inner, n)` over `count` runs of `inner` 16-bit values each: as uint4's, eight values
// at a time, where the runs and both pointers allow 16-byte accesses.
template <class Launch>
void by_run(const void* x, void* y, int64_t count, int64_t inner, Launch launch) {
  if (inner % 8 == 0 && aligned16(x) && aligned16(y))
    launch(static_cast<const uint4*>(x), static_cast<uint4*>(y), inner / 8, count * inner / 8);
  else launch(H(x), HM(y), inner, count * inner);
}
template <class P>
using Elem = std::remove_const_t<std::remove_pointer_t<P>>;

void upsample_nearest(const void* x, void* y, int64_t B, int64_t Ch, int64_t Hh, int64_t W, int64_t oh, int64_t ow, bool nhwc,
                      cudaStream_t s) {
  float sy = float(Hh) / float(oh), sx = float(W) / float(ow);
  by_run(x, y, (nhwc ? B : B * Ch) * oh * ow, nhwc ? Ch : 1, [&](auto xv, auto yv, int64_t inner, int64_t n) {
    PG25_LAUNCH(k_upsample<Elem<decltype(xv)>>, grid(n), 256, 0, s)(xv, yv, Hh, W, oh, ow, sy, sx, inner, n);
  });
}
void pad2d(const void* x, void* y, int64_t B, int64_t Ch, int64_t Hh, int64_t W, int left, int top, int64_t Ho, int64_t Wo, bool nhwc,
           cudaStream_t s) {
  by_run(x, y, (nhwc ? B : B * Ch) * Ho * Wo, nhwc ? Ch : 1, [&](auto xv, auto yv, int64_t inner, int64_t n) {
    PG25_LAUNCH(k_pad<Elem<decltype(xv)>>, grid(n), 256, 0, s)(xv, yv, Hh, W, left, top, Ho, Wo, inner, n);
  });
}
void transpose_last2(const void* x, void* y, int64_t B, int64_t src_batches, int64_t R, int64_t Cc, cudaStream_t s) {
  PG25_LAUNCH(k_transpose, grid(B * R * Cc), 256, 0, s)(H(x), HM(y), R, Cc, src_batches, B * R * Cc);
}
void embedding(const int32_t* ids, const void* table, void* y, int64_t n, int64_t Ch, cudaStream_t s) {
  PG25_LAUNCH(k_embedding, grid(n * Ch), 256, 0, s)(ids, H(table), HM(y), n, Ch);
}
void to_rgb8(const void* x, uint8_t* y, int64_t B, int64_t HW, bool nhwc, bool wide, cudaStream_t s) {
  BY_TYPE(wide, PG25_LAUNCH(k_to_rgb8<T>, grid(B * HW * 3), 256, 0, s)(C(x), y, HW, nhwc, B * HW * 3));
}
void latent_rgb(const void* x, const float* m, const float* bias, uint8_t* y, int64_t B, int64_t Ch, int64_t HW, bool nhwc, bool wide,
                cudaStream_t s) {
  BY_TYPE(wide, PG25_LAUNCH(k_latent_rgb<T>, grid(B * HW * 3), 256, 0, s)(C(x), m, bias, y, Ch, HW, nhwc, B * HW * 3));
}

}  // namespace pg25::cuda
