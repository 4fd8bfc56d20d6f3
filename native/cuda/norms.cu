// Normalisations on the GPU, in fp32 from 16-bit storage.
#include <cstring>

#include "kernels.h"
#include "launch.h"
#include "storage.h"

namespace pg25::cuda {
namespace {

__device__ __forceinline__ float silu_n(float v) { return v / (1.f + __expf(-v)); }

// Block reduction of two floats.
__device__ void reduce2(float& a, float& b) {
  __shared__ float sa[32], sb[32];
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_xor_sync(0xffffffff, a, o);
    b += __shfl_xor_sync(0xffffffff, b, o);
  }
  int w = threadIdx.x / 32, l = threadIdx.x % 32;
  __syncthreads();
  if (l == 0) {
    sa[w] = a;
    sb[w] = b;
  }
  __syncthreads();
  int nw = (blockDim.x + 31) / 32;
  a = l < nw ? sa[l] : 0.f;
  b = l < nw ? sb[l] : 0.f;
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_xor_sync(0xffffffff, a, o);
    b += __shfl_xor_sync(0xffffffff, b, o);
  }
}

// Partial moments (count, mean, M2) of one stretch of values, combined with Chan et al.'s pairwise
// update, so any number of blocks can reduce one group without losing the variance to cancellation.
struct Moments {
  float n = 0.f, mean = 0.f, m2 = 0.f;
};
__device__ __forceinline__ Moments combine(Moments a, float nb, float mb, float m2b) {
  float n = a.n + nb;
  if (n == 0.f) return a;
  float delta = mb - a.mean;
  a.mean += delta * (nb / n);
  a.m2 += m2b + delta * delta * (a.n * (nb / n));
  a.n = n;
  return a;
}
__device__ Moments block_moments(Moments m) {
  __shared__ float sn[32], sm[32], s2[32];
  for (int o = 16; o > 0; o >>= 1)
    m = combine(m, __shfl_xor_sync(0xffffffffu, m.n, o), __shfl_xor_sync(0xffffffffu, m.mean, o), __shfl_xor_sync(0xffffffffu, m.m2, o));
  int w = threadIdx.x / 32, l = threadIdx.x % 32;
  __syncthreads();
  if (l == 0) {
    sn[w] = m.n;
    sm[w] = m.mean;
    s2[w] = m.m2;
  }
  __syncthreads();
  int nw = (blockDim.x + 31) / 32;
  m = l < nw ? Moments{sn[l], sm[l], s2[l]} : Moments{};
  for (int o = 16; o > 0; o >>= 1)
    m = combine(m, __shfl_xor_sync(0xffffffffu, m.n, o), __shfl_xor_sync(0xffffffffu, m.mean, o), __shfl_xor_sync(0xffffffffu, m.m2, o));
  return m;
}

// Eight consecutive 16-bit values in one 16-byte load.
template <class T>
__device__ __forceinline__ void load8(const T* p, float (&v)[8]) {
  T e[8];
  load16(p, e);
  for (int i = 0; i < 8; i++) v[i] = ld(e, i);
}

// GroupNorm, pass 1: block (chunk, b * groups + g) reduces its stretch of the group to moments.
// Values are summed shifted by the stretch's first value, which keeps the fp32 sums well conditioned.
// `add` (when given, [B, C]) is added to each channel first: a ResNet block's time embedding.
template <class T, bool VEC>
__global__ void k_group_partial(const T* x, const T* add, float* part, int64_t n, int64_t HW, int64_t len) {
  int64_t bg = blockIdx.y, c0 = int64_t(blockIdx.x) * len, c1 = c0 + len < n ? c0 + len : n;
  const T* src = x + bg * n;
  const T* t = add ? add + bg * (n / HW) : nullptr;  // this group's channels of `add`
  float shift = ld(src, c0) + (t ? ld(t, c0 / HW) : 0.f), s = 0.f, s2 = 0.f, cnt = 0.f;
  if (VEC) {
    for (int64_t i = c0 + int64_t(threadIdx.x) * 8; i < c1; i += int64_t(blockDim.x) * 8) {
      float v[8];
      load8(src + i, v);
      float a = t ? ld(t, i / HW) : 0.f;  // eight values of one channel (HW % 8 == 0)
      for (int e = 0; e < 8; e++) {
        float d = v[e] + a - shift;
        s += d;
        s2 += d * d;
      }
      cnt += 8.f;
    }
  } else {
    for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) {
      float d = ld(src, i) + (t ? ld(t, i / HW) : 0.f) - shift;
      s += d;
      s2 += d * d;
      cnt += 1.f;
    }
  }
  Moments m;
  if (cnt > 0.f) m = Moments{cnt, shift + s / cnt, fmaxf(0.f, s2 - s * s / cnt)};
  m = block_moments(m);
  if (threadIdx.x == 0) {
    float* out = part + (bg * gridDim.x + blockIdx.x) * 3;
    out[0] = m.n;
    out[1] = m.mean;
    out[2] = m.m2;
  }
}

// Pass 2: each (batch, group) combines its chunks into mean and 1 / std.
__global__ void k_group_finalize(const float* part, float* stats, int64_t groups_total, int chunks, float eps) {
  int64_t bg = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (bg >= groups_total) return;
  Moments m;
  for (int c = 0; c < chunks; c++) {
    const float* p = part + (bg * chunks + c) * 3;
    m = combine(m, p[0], p[1], p[2]);
  }
  stats[bg * 2] = m.mean;
  stats[bg * 2 + 1] = rsqrtf(m.m2 / m.n + eps);
}

// Pass 3: normalise, scale and shift per channel (+ SiLU), over every element at once.
template <class T, bool VEC>
__global__ void k_group_apply(const T* x, const T* add, const float* stats, const T* g, const T* bt, T* y, int64_t C, int64_t HW,
                              int64_t cg, bool silu, int64_t total) {
  constexpr int kStep = VEC ? 8 : 1;
  for (int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * kStep; i < total; i += int64_t(gridDim.x) * blockDim.x * kStep) {
    int64_t bc = i / HW, ch = bc % C, bg = bc / cg;  // b * groups + channel / cg
    float mean = stats[bg * 2], rstd = stats[bg * 2 + 1], scale = rstd * ld(g, ch), shift = ld(bt, ch) - mean * scale;
    if (add) shift += ld(add, bc) * scale;  // (x + a) * scale + shift
    if (VEC) {
      float v[8];
      load8(x + i, v);
      T out[8];
      for (int e = 0; e < 8; e++) {
        float r = v[e] * scale + shift;
        st(out, e, silu ? silu_n(r) : r);
      }
      store16(y + i, out);
    } else {
      float r = ld(x, i) * scale + shift;
      st(y, i, silu ? silu_n(r) : r);
    }
  }
}

// The NHWC GroupNorm's shared memory: moments of every channel for each row lane of a block.
constexpr int kNhwcSlots = int(kGroupNormNhwcMaxChannels);

// NHWC GroupNorm, pass 1: block (chunk, b) reduces rows [chunk * len, +len) of image b. Its threads form
// `rows_per` row lanes of `tpr` threads; a thread owns VEC consecutive channels (one 16-byte load when
// VEC is 8) and steps down the rows of its lane, summing each channel shifted by its first value. The
// per-channel moments meet in shared memory, where one thread per group combines its channels.
template <class T, int VEC>
__global__ void k_group_partial_nhwc(const T* x, const T* add, float* part, int64_t C, int64_t HW, int64_t len, int groups, int tpr) {
  __shared__ float sm[kNhwcSlots * 3];
  int64_t b = blockIdx.y, r0 = int64_t(blockIdx.x) * len, r1 = r0 + len < HW ? r0 + len : HW;
  int rows_per = int(blockDim.x) / tpr, col = int(threadIdx.x) % tpr, ry = int(threadIdx.x) / tpr;
  int64_t lanes = C / VEC;
  const T* img = x + b * HW * C;
  for (int64_t v = col; v < lanes; v += tpr) {
    float shift[VEC], s[VEC], s2[VEC], cnt = 0.f;
    for (int e = 0; e < VEC; e++) shift[e] = s[e] = s2[e] = 0.f;
    for (int64_t r = r0 + ry; r < r1; r += rows_per) {
      float val[VEC];
      if (VEC == 8) {
        T e8[8];
        load16(img + r * C + v * 8, e8);
        for (int e = 0; e < VEC; e++) val[e] = ld(e8, e);
      } else {
        for (int e = 0; e < VEC; e++) val[e] = ld(img, r * C + v * VEC + e);
      }
      if (add)
        for (int e = 0; e < VEC; e++) val[e] += ld(add, b * C + v * VEC + e);
      if (cnt == 0.f)
        for (int e = 0; e < VEC; e++) shift[e] = val[e];
      for (int e = 0; e < VEC; e++) {
        float d = val[e] - shift[e];
        s[e] += d;
        s2[e] += d * d;
      }
      cnt += 1.f;
    }
    for (int e = 0; e < VEC; e++) {
      float* o = sm + (int64_t(ry) * C + v * VEC + e) * 3;
      o[0] = cnt;
      o[1] = cnt > 0.f ? shift[e] + s[e] / cnt : 0.f;
      o[2] = cnt > 0.f ? fmaxf(0.f, s2[e] - s[e] * s[e] / cnt) : 0.f;
    }
  }
  __syncthreads();
  int64_t cg = C / groups;
  for (int g = int(threadIdx.x); g < groups; g += int(blockDim.x)) {
    Moments m;
    for (int l = 0; l < rows_per; l++)
      for (int64_t c = g * cg; c < (g + 1) * cg; c++) {
        const float* o = sm + (int64_t(l) * C + c) * 3;
        m = combine(m, o[0], o[1], o[2]);
      }
    float* out = part + ((b * groups + g) * gridDim.x + blockIdx.x) * 3;
    out[0] = m.n;
    out[1] = m.mean;
    out[2] = m.m2;
  }
}

// NHWC pass 3: element i is channel i % C of image i / (HW * C); VEC consecutive channels per step.
template <class T, int VEC>
__global__ void k_group_apply_nhwc(const T* x, const T* add, const float* stats, const T* g, const T* bt, T* y, int64_t C, int64_t HW,
                                   int64_t cg, int groups, bool silu, int64_t total) {
  for (int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * VEC; i < total; i += int64_t(gridDim.x) * blockDim.x * VEC) {
    int64_t ch0 = i % C, b = i / (HW * C);
    T in[8], out[8];
    if (VEC == 8) load16(x + i, in);
    else
      for (int e = 0; e < VEC; e++) in[e] = x[i + e];
    for (int e = 0; e < VEC; e++) {
      int64_t ch = ch0 + e, bg = b * groups + ch / cg;
      float v = ld(in, e) + (add ? ld(add, b * C + ch) : 0.f);
      float r = (v - stats[bg * 2]) * stats[bg * 2 + 1] * ld(g, ch) + ld(bt, ch);
      st(out, e, silu ? silu_n(r) : r);
    }
    if (VEC == 8) store16(y + i, out);
    else
      for (int e = 0; e < VEC; e++) y[i + e] = out[e];
  }
}

// LayerNorm of rows of at most 128 x 8 x K values, read once with 16-byte loads and kept in registers
// for both moments (an exact two-pass variance without a second read), one row per block.
template <class T, int K>
__global__ void k_layer_norm_vec(const T* x, const T* g, const T* bt, T* y, int64_t C, float eps) {
  const T* src = x + blockIdx.x * C;
  float v[K][8];
  float s = 0.f, unused = 0.f;
  for (int k = 0; k < K; k++) {
    int64_t i = (int64_t(k) * blockDim.x + threadIdx.x) * 8;
    if (i < C) {
      load8(src + i, v[k]);
      for (int e = 0; e < 8; e++) s += v[k][e];
    }
  }
  reduce2(s, unused);
  float mean = s / float(C), q = 0.f;
  for (int k = 0; k < K; k++)
    if ((int64_t(k) * blockDim.x + threadIdx.x) * 8 < C)
      for (int e = 0; e < 8; e++) q += (v[k][e] - mean) * (v[k][e] - mean);
  unused = 0.f;
  reduce2(q, unused);
  float rstd = rsqrtf(q / float(C) + eps);
  for (int k = 0; k < K; k++) {
    int64_t i = (int64_t(k) * blockDim.x + threadIdx.x) * 8;
    if (i >= C) continue;
    float gg[8], bb[8];
    load8(g + i, gg);
    load8(bt + i, bb);
    T out[8];
    for (int e = 0; e < 8; e++) st(out, e, (v[k][e] - mean) * rstd * gg[e] + bb[e]);
    store16(y + blockIdx.x * C + i, out);
  }
}

// Any row length or alignment: three strided passes.
template <class T>
__global__ void k_layer_norm(const T* x, const T* g, const T* bt, T* y, int64_t C, float eps) {
  const T* src = x + blockIdx.x * C;
  float s = 0.f, dummy = 0.f;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) s += ld(src, i);
  reduce2(s, dummy);
  float mean = s / float(C), q = 0.f;
  dummy = 0.f;
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
    float d = ld(src, i) - mean;
    q += d * d;
  }
  reduce2(q, dummy);
  float rstd = rsqrtf(q / float(C) + eps);
  for (int64_t i = threadIdx.x; i < C; i += blockDim.x) st(y + blockIdx.x * C, i, (ld(src, i) - mean) * rstd * ld(g, i) + ld(bt, i));
}

}  // namespace

#define C(p) static_cast<const T*>(p)
#define M(p) static_cast<T*>(p)

namespace {
// Blocks of 256 threads for a grid-stride pass over `total` values, eight a thread when `vec`.
unsigned apply_blocks(int64_t total, bool vec) {
  int64_t blocks = (total / (vec ? 8 : 1) + 255) / 256;
  return unsigned(blocks < 1 ? 1 : blocks > 65535 * 8 ? 65535 * 8 : blocks);
}
}  // namespace

GroupNormPlan plan_group_norm(int64_t B, int64_t C, int64_t HW, int groups) {
  GroupNormPlan p;
  int64_t n = C / groups * HW, bg = B * groups;
  // Enough blocks for about four per SM of an H100 (132 SMs), each with at least 2,048 values.
  int64_t want = (4 * 132 + bg - 1) / bg, most = n / 2048 > 1 ? n / 2048 : 1;
  p.chunks = int(want < most ? want : most);
  p.len = ((n + p.chunks - 1) / p.chunks + 7) / 8 * 8;
  p.chunks = int((n + p.len - 1) / p.len);
  p.scratch_floats = bg * p.chunks * 3 + bg * 2;
  return p;
}

void group_norm(const void* x, const void* add, const void* gamma, const void* beta, void* y, int64_t B, int64_t Ch, int64_t HW, int groups,
                float eps, bool silu, bool wide, const GroupNormPlan& plan, float* scratch, cudaStream_t s) {
  int64_t cg = Ch / groups, n = cg * HW, bg = B * groups, total = B * Ch * HW;
  float* part = scratch;
  float* stats = scratch + bg * plan.chunks * 3;
  // 16-byte loads when every group, chunk and channel starts on a 16-byte boundary.
  bool vec = HW % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0;
  dim3 g1(unsigned(plan.chunks), unsigned(bg));
  unsigned g3 = apply_blocks(total, vec);
  BY_TYPE(wide, {
    if (vec) PG25_LAUNCH(k_group_partial<T BY_COMMA true>, g1, 256, 0, s)(C(x), C(add), part, n, HW, plan.len);
    else PG25_LAUNCH(k_group_partial<T BY_COMMA false>, g1, 256, 0, s)(C(x), C(add), part, n, HW, plan.len);
    PG25_LAUNCH(k_group_finalize, unsigned((bg + 127) / 128), 128, 0, s)(part, stats, bg, plan.chunks, eps);
    if (vec)
      PG25_LAUNCH(k_group_apply<T BY_COMMA true>, g3, 256, 0, s)(C(x), C(add), stats, C(gamma), C(beta), M(y), Ch, HW, cg, silu, total);
    else PG25_LAUNCH(k_group_apply<T BY_COMMA false>, g3, 256, 0, s)(C(x), C(add), stats, C(gamma), C(beta), M(y), Ch, HW, cg, silu, total);
  });
}

GroupNormPlan plan_group_norm_nhwc(int64_t B, int64_t C, int64_t HW, int groups) {
  GroupNormPlan p;
  // About four blocks per SM of an H100 over the batch, each with at least 4,096 values.
  int64_t want = (4 * 132 + B - 1) / B, most = HW * C / 4096 > 1 ? HW * C / 4096 : 1;
  p.chunks = int(want < most ? (want < HW ? want : HW) : (most < HW ? most : HW));
  p.len = (HW + p.chunks - 1) / p.chunks;
  p.chunks = int((HW + p.len - 1) / p.len);
  p.scratch_floats = B * groups * p.chunks * 3 + B * groups * 2;
  return p;
}

void group_norm_nhwc(const void* x, const void* add, const void* gamma, const void* beta, void* y, int64_t B, int64_t Ch, int64_t HW,
                     int groups, float eps, bool silu, bool wide, const GroupNormPlan& plan, float* scratch, cudaStream_t s) {
  int64_t cg = Ch / groups, bg = B * groups, total = B * Ch * HW;
  float* part = scratch;
  float* stats = scratch + bg * plan.chunks * 3;
  bool vec = Ch % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0;
  int64_t lanes = vec ? Ch / 8 : Ch;
  int tpr = int(lanes < 256 ? lanes : 256);
  int64_t rows_per = 256 / tpr, room = kNhwcSlots / Ch;  // the caller keeps Ch <= kNhwcSlots
  if (rows_per > room) rows_per = room;
  if (rows_per < 1) rows_per = 1;
  unsigned threads = unsigned(tpr * rows_per);
  dim3 g1(unsigned(plan.chunks), unsigned(B));
  unsigned g3 = apply_blocks(total, vec);
  BY_TYPE(wide, {
    if (vec) PG25_LAUNCH(k_group_partial_nhwc<T BY_COMMA 8>, g1, threads, 0, s)(C(x), C(add), part, Ch, HW, plan.len, groups, tpr);
    else PG25_LAUNCH(k_group_partial_nhwc<T BY_COMMA 1>, g1, threads, 0, s)(C(x), C(add), part, Ch, HW, plan.len, groups, tpr);
    PG25_LAUNCH(k_group_finalize, unsigned((bg + 127) / 128), 128, 0, s)(part, stats, bg, plan.chunks, eps);
    if (vec) PG25_LAUNCH(k_group_apply_nhwc<T BY_COMMA 8>, g3, 256, 0, s)
    (C(x), C(add), stats, C(gamma), C(beta), M(y), Ch, HW, cg, groups, silu, total);
    else PG25_LAUNCH(k_group_apply_nhwc<T BY_COMMA 1>, g3, 256, 0, s)(C(x), C(add), stats, C(gamma), C(beta), M(y), Ch, HW, cg, groups,
                                                                      silu, total);
  });
}

void layer_norm(const void* x, const void* gamma, const void* beta, void* y, int64_t rows, int64_t Ch, float eps, bool wide,
                cudaStream_t s) {
  auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  bool vec = Ch % 8 == 0 && Ch <= 2048 && a16(x) && a16(y) && a16(gamma) && a16(beta);
  if (vec && Ch <= 1024)
    BY_TYPE(wide, PG25_LAUNCH(k_layer_norm_vec<T BY_COMMA 1>, unsigned(rows), 128, 0, s)(C(x), C(gamma), C(beta), M(y), Ch, eps));
  else if (vec)
    BY_TYPE(wide, PG25_LAUNCH(k_layer_norm_vec<T BY_COMMA 2>, unsigned(rows), 128, 0, s)(C(x), C(gamma), C(beta), M(y), Ch, eps));
  else BY_TYPE(wide, PG25_LAUNCH(k_layer_norm<T>, unsigned(rows), 256, 0, s)(C(x), C(gamma), C(beta), M(y), Ch, eps));
}

}  // namespace pg25::cuda
