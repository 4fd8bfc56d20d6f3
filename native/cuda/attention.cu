// Attention on the GPU, on tensor cores at every head dim up to 512: q [B, Nq, C], k and v [B, Nk, C],
// heads splitting C, scaled by 1/sqrt(C/heads), with an online softmax so no Nq x Nk matrix is stored.
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "async_copy.h"
#include "kernels.h"
#include "launch.h"
#include "mma.h"
#include "storage.h"
#include "../platform/env.h"

namespace pg25::cuda {
namespace {

// Two 16-bit values as one register, the first in the low half (mma.h's fragment packing).
template <class T>
__device__ __forceinline__ uint32_t pack(T lo, T hi) {
  uint16_t a, b;
  memcpy(&a, &lo, 2);
  memcpy(&b, &hi, 2);
  return uint32_t(a) | (uint32_t(b) << 16);
}
template <class T>
__device__ __forceinline__ uint32_t pack_f(float lo, float hi) {
  T v[2];
  st(v, 0, lo);
  st(v, 1, hi);
  return pack(v[0], v[1]);
}

constexpr int kWarpRows = 16;  // query rows of one mma row tile; a warp of k_flash_attention holds MT of them
constexpr int kRowGroups = 2;  // groups of 16 query rows per block of the wide kernel, four warps each
constexpr int kPad = 8;        // shared rows padded by 16 bytes, so a fragment's 8 rows fall in different banks

// Two consecutive 16-bit values of a shared row (an even column: rows are 16-byte aligned) as one
// fragment register, in one 32-bit shared load.
template <class T>
__device__ __forceinline__ uint32_t lds32(const T* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Issues cp.async copies of the K and V tile at keys k0.. into sk, sv (zeros past Nk and d) as one group.
// Needs d % 8 == 0 and 16-byte aligned rows.
template <int BN, int DP, class T>
__device__ __forceinline__ void issue_kv(T (&sk)[BN][DP + kPad], T (&sv)[BN][DP + kPad], const T* kb, const T* vb, int64_t k0, int64_t Nk,
                                         int64_t C, int d) {
  for (int i = int(threadIdx.x); i < BN * DP / 8; i += int(blockDim.x)) {
    int r = i / (DP / 8), c = i % (DP / 8) * 8;
    bool in = k0 + r < Nk && c < d;
    int64_t at = in ? (k0 + r) * C + c : 0;
    cp_async16(&sk[r][c], kb + at, in);
    cp_async16(&sv[r][c], vb + at, in);
  }
  cp_async_commit();
}

// A block's share of a K and V tile (BN rows of DP dims) in 16-byte pieces, held in registers between
// the global loads and the shared stores, so the next tile's loads are in flight while the tensor
// cores work on this one. Needs d % 8 == 0 and 16-byte aligned rows (VEC in the kernel).
template <int BN, int DP, int THREADS>
struct KvStage {
  static constexpr int kPieces = BN * DP / 8 / THREADS;
  uint4 k[kPieces], v[kPieces];
  template <class T>
  __device__ __forceinline__ void load(const T* kb, const T* vb, int64_t k0, int64_t Nk, int64_t C, int d) {
    for (int i = 0; i < kPieces; i++) {
      int idx = int(threadIdx.x) + i * THREADS, r = idx / (DP / 8), c = idx % (DP / 8) * 8;
      bool in = k0 + r < Nk && c < d;
      k[i] = in ? *reinterpret_cast<const uint4*>(kb + (k0 + r) * C + c) : uint4{0u, 0u, 0u, 0u};
      v[i] = in ? *reinterpret_cast<const uint4*>(vb + (k0 + r) * C + c) : uint4{0u, 0u, 0u, 0u};
    }
  }
  template <class T>
  __device__ __forceinline__ void store(T (&sk)[BN][DP + kPad], T (&sv)[BN][DP + kPad]) const {
    for (int i = 0; i < kPieces; i++) {
      int idx = int(threadIdx.x) + i * THREADS, r = idx / (DP / 8), c = idx % (DP / 8) * 8;
      *reinterpret_cast<uint4*>(&sk[r][c]) = k[i];
      *reinterpret_cast<uint4*>(&sv[r][c]) = v[i];
    }
  }
};

// The block's K and V tile: rows k0.. of the head (zeros past Nk and past d), into padded shared rows.
template <class T, int BN, int W>
__device__ __forceinline__ void load_kv(T (&sk)[BN][W], T (&sv)[BN][W], const T* kb, const T* vb, int64_t k0, int64_t Nk, int64_t C,
                                        int d) {
  constexpr int DP = W - kPad;
  for (int i = threadIdx.x; i < BN * DP; i += blockDim.x) {
    int r = i / DP, c = i % DP;
    if (k0 + r < Nk && c < d) {
      sk[r][c] = kb[(k0 + r) * C + c];
      sv[r][c] = vb[(k0 + r) * C + c];
    } else {
      st(&sk[r][0], c, 0.f);
      st(&sv[r][0], c, 0.f);
    }
  }
}

// One tile of the online softmax for this lane's two rows (row0 and row0 + 8), on the score tile s
// (accumulator layout: NT tiles of 8 keys from key k0): scale and mask the scores, raise the running
// max, rescale the running sum and the output accumulators o, and leave P = exp(S - max) in s.
template <int NT, int NO>
__device__ __forceinline__ void softmax_step(float (&s)[NT][4], float (&o)[NO][4], float (&mrow)[2], float (&lrow)[2], int64_t row0,
                                             int64_t k0, int t, int64_t Nk, bool causal, float scale) {
  for (int r = 0; r < 2; r++) {
    int64_t qi = row0 + 8 * r;
    float mx = -INFINITY;
    for (int j = 0; j < NT; j++)
      for (int e = 0; e < 2; e++) {
        int64_t key = k0 + j * 8 + 2 * t + e;
        float x = s[j][2 * r + e] * scale;
        if (key >= Nk || (causal && key > qi)) x = -INFINITY;
        s[j][2 * r + e] = x;
        mx = fmaxf(mx, x);
      }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));  // the four lanes that share a row
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    float mnew = fmaxf(mrow[r], mx);
    float base = mnew == -INFINITY ? 0.f : mnew;  // a row with no key yet stays all zeros
    float corr = __expf(mrow[r] - base);
    mrow[r] = mnew;
    lrow[r] *= corr;
    for (int n = 0; n < NO; n++) {
      o[n][2 * r] *= corr;
      o[n][2 * r + 1] *= corr;
    }
    for (int j = 0; j < NT; j++)
      for (int e = 0; e < 2; e++) {
        float p = __expf(s[j][2 * r + e] - base);
        s[j][2 * r + e] = p;
        lrow[r] += p;
      }
  }
}

// Divides this lane's output accumulators by the row sums (gathered from the row's four lanes) and
// stores rows row0 and row0 + 8 (those below Nq), columns d0 + 8n + 2t + e (those below d), of y.
template <int NO, class T>
__device__ __forceinline__ void write_rows(const float (&o)[NO][4], const float (&lrow)[2], T* y, int64_t row0, int d0, int64_t Nq,
                                           int64_t C, int d, int t) {
  for (int r = 0; r < 2; r++) {
    float l = lrow[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    int64_t qi = row0 + 8 * r;
    if (qi >= Nq) continue;
    for (int n = 0; n < NO; n++)
      for (int e = 0; e < 2; e++) {
        int c = d0 + n * 8 + 2 * t + e;
        if (c < d) st(y + qi * C, c, o[n][2 * r + e] / l);
      }
  }
}

// Head dims up to 128 on tensor cores (FlashAttention-2's scheme): each warp holds MT tiles of 16 query
// rows' Q fragments in registers, streams K and V tiles of BN keys through shared memory, computes
// S = Q K^T with mma.sync, keeps a running row max and sum, and accumulates O += P V with P rounded to
// the storage type; K and V fragments come out of shared memory by ldmatrix, four 8x8 matrices an
// instruction, each serving the warp's MT row tiles (at MT = 2, FlashAttention-2's 32 rows a warp for
// head dim 64, a tile's shared-memory reads are half as many per mma). DP is the head dim padded to 64
// or 128 (zeros beyond d). VEC (d and C multiples of 8, 16-byte aligned tensors) moves Q 16 bytes at a
// time and K and V by cp.async into two buffers, the next tile landing while this one is computed on;
// otherwise each value is loaded on its own, tile by tile, into the first buffer.
template <class T, int DP, int BN, int MT, bool VEC>
__global__ void k_flash_attention(const T* q, const T* k, const T* v, T* y, int64_t Nq, int64_t Nk, int64_t C, int heads, int d,
                                  bool causal, float scale) {
  constexpr bool kBf16 = std::is_same<T, bf>::value;
  constexpr int kRows = 4 * kWarpRows * MT;  // query rows per block: four warps
  // One 16-byte aligned block of shared memory: Q's tile until its fragments are in registers, then
  // K/V tiles kv[0], kv[1] (the first buffer) and kv[2], kv[3] (the second). Rows are 16-byte aligned
  // for the 16-byte copies and ldmatrix.
  constexpr int kW = DP + kPad, kQ = kRows * kW, kKV = 4 * BN * kW;
  alignas(16) __shared__ T smem[kQ > kKV ? kQ : kKV];
  using Tile = T[BN][kW];
  auto sq = reinterpret_cast<T(*)[kW]>(smem);
  auto kv = reinterpret_cast<Tile*>(smem);
  int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32, g = lane >> 2, t = lane & 3;
  int64_t b = blockIdx.y / heads, hd = blockIdx.y % heads, q0 = int64_t(blockIdx.x) * kRows;
  const T* qb = q + b * Nq * C + hd * d;
  const T* kb = k + b * Nk * C + hd * d;
  const T* vb = v + b * Nk * C + hd * d;

  if (VEC) {
    for (int i = threadIdx.x; i < kRows * DP / 8; i += blockDim.x) {
      int r = i / (DP / 8), c = i % (DP / 8) * 8;
      *reinterpret_cast<uint4*>(&sq[r][c]) =
          q0 + r < Nq && c < d ? *reinterpret_cast<const uint4*>(qb + (q0 + r) * C + c) : uint4{0u, 0u, 0u, 0u};
    }
  } else {
    for (int i = threadIdx.x; i < kRows * DP; i += blockDim.x) {
      int r = i / DP, c = i % DP;
      if (q0 + r < Nq && c < d) sq[r][c] = qb[(q0 + r) * C + c];
      else st(&sq[r][0], c, 0.f);
    }
  }
  __syncthreads();
  const int row = warp * kWarpRows * MT + g;  // this lane's rows in row tile m: row + 16m and row + 16m + 8
  const int lr = lane % 8, lm = lane / 8;     // the row of the matrix this lane addresses in an ldmatrix.x4
  uint32_t qa[MT][DP / 16][4];
#pragma unroll
  for (int m = 0; m < MT; m++)
#pragma unroll
    for (int kk = 0; kk < DP / 16; kk++) {
      int c = kk * 16 + 2 * t, r = row + m * kWarpRows;
      qa[m][kk][0] = lds32(&sq[r][c]);
      qa[m][kk][1] = lds32(&sq[r + 8][c]);
      qa[m][kk][2] = lds32(&sq[r][c + 8]);
      qa[m][kk][3] = lds32(&sq[r + 8][c + 8]);
    }

  float o[MT][DP / 8][4] = {};
  float mrow[MT][2], lrow[MT][2];  // running max and (this lane's partial) sum
#pragma unroll
  for (int m = 0; m < MT; m++) mrow[m][0] = mrow[m][1] = -INFINITY, lrow[m][0] = lrow[m][1] = 0.f;
  int64_t kv_end = causal ? (q0 + kRows < Nk ? q0 + kRows : Nk) : Nk;
  __syncthreads();  // every warp holds its Q fragments: the memory becomes K/V tiles
  if (VEC) issue_kv<BN, DP>(kv[0], kv[1], kb, vb, 0, Nk, C, d);
  for (int64_t k0 = 0, it = 0; k0 < kv_end; k0 += BN, it++) {
    int cur = VEC ? int(it & 1) : 0;
    if (!VEC) {
      load_kv(kv[0], kv[1], kb, vb, k0, Nk, C, d);
    } else if (k0 + BN < kv_end) {
      issue_kv<BN, DP>(kv[2 * (cur ^ 1)], kv[2 * (cur ^ 1) + 1], kb, vb, k0 + BN, Nk, C, d);  // lands during this tile's work
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // this tile is in shared memory, every thread's part of it
    Tile& sk = kv[2 * cur];
    Tile& sv = kv[2 * cur + 1];

    // S = Q K^T: one ldmatrix.x4 gives the K fragments of 8 keys over 32 dims (two k-steps), for every row tile.
    float s[MT][BN / 8][4];
#pragma unroll
    for (int j = 0; j < BN / 8; j++) {
#pragma unroll
      for (int m = 0; m < MT; m++)
#pragma unroll
        for (int i = 0; i < 4; i++) s[m][j][i] = 0.f;
#pragma unroll
      for (int kk = 0; kk < DP / 16; kk += 2) {
        uint32_t kf[4];
        ldmatrix_x4<false>(kf, &sk[j * 8 + lr][kk * 16 + lm * 8]);
        uint32_t b0[2] = {kf[0], kf[1]}, b1[2] = {kf[2], kf[3]};
#pragma unroll
        for (int m = 0; m < MT; m++) {
          mma_m16n8k16<kBf16>(s[m][j], qa[m][kk], b0, s[m][j]);
          mma_m16n8k16<kBf16>(s[m][j], qa[m][kk + 1], b1, s[m][j]);
        }
      }
    }
#pragma unroll
    for (int m = 0; m < MT; m++) softmax_step(s[m], o[m], mrow[m], lrow[m], q0 + row + m * kWarpRows, k0, t, Nk, causal, scale);
// O += P V: P's accumulator tiles 2kk and 2kk+1 are the A fragment of keys [16kk, 16kk + 16); one
// ldmatrix.x4.trans gives the V fragments of those keys over 16 dims (two n-tiles).
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) {
      uint32_t pa[MT][4];
#pragma unroll
      for (int m = 0; m < MT; m++) {
        pa[m][0] = pack_f<T>(s[m][2 * kk][0], s[m][2 * kk][1]);
        pa[m][1] = pack_f<T>(s[m][2 * kk][2], s[m][2 * kk][3]);
        pa[m][2] = pack_f<T>(s[m][2 * kk + 1][0], s[m][2 * kk + 1][1]);
        pa[m][3] = pack_f<T>(s[m][2 * kk + 1][2], s[m][2 * kk + 1][3]);
      }
#pragma unroll
      for (int n = 0; n < DP / 8; n += 2) {
        uint32_t vf[4];
        ldmatrix_x4<true>(vf, &sv[kk * 16 + (lm & 1) * 8 + lr][(n + (lm >> 1)) * 8]);
        uint32_t b0[2] = {vf[0], vf[1]}, b1[2] = {vf[2], vf[3]};
#pragma unroll
        for (int m = 0; m < MT; m++) {
          mma_m16n8k16<kBf16>(o[m][n], pa[m], b0, o[m][n]);
          mma_m16n8k16<kBf16>(o[m][n + 1], pa[m], b1, o[m][n + 1]);
        }
      }
    }
    __syncthreads();  // this tile is consumed: the next copies may overwrite its buffer
  }
#pragma unroll
  for (int m = 0; m < MT; m++) write_rows(o[m], lrow[m], y + b * Nq * C + hd * d, q0 + row + m * kWarpRows, 0, Nq, C, d, t);
}

// Head dims from 129 to 512 (the VAE's single 512-wide head): four warps take 16 query rows and split
// the head dim four ways (128 each, padded with zeros). Each warp multiplies its slice of Q and K on
// tensor cores; the four partial score tiles are summed through shared memory, every warp of the four
// runs the same online softmax on the sum, and accumulates P V for its own 128 output dims. A block
// holds kRowGroups such groups of rows, so each K/V tile it loads serves 16 x kRowGroups queries (the
// 16,384-token VAE attention reads K and V once per block). VEC moves K and V
// 16 bytes at a time through registers, the next tile in flight (two cp.async buffers of 512-wide rows
// would not fit in 48 KB of static shared memory).
template <class T, bool VEC>
__global__ void k_flash_attention_wide(const T* q, const T* k, const T* v, T* y, int64_t Nq, int64_t Nk, int64_t C, int heads, int d,
                                       bool causal, float scale) {
  constexpr bool kBf16 = std::is_same<T, bf>::value;
  constexpr int kBN = 16, kSlice = 128, kDP = 4 * kSlice;
  alignas(16) __shared__ T sk[kBN][kDP + kPad];
  alignas(16) __shared__ T sv[kBN][kDP + kPad];
  __shared__ float sp[kRowGroups][4][16][kBN + 1];
  int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32, g = lane >> 2, t = lane & 3;
  int rg = warp / 4, d0 = warp % 4 * kSlice;  // this warp's group of rows, and its slice of the head dim
  int lr = lane % 8, lm = lane / 8;           // as in k_flash_attention
  int64_t b = blockIdx.y / heads, hd = blockIdx.y % heads, qblock = int64_t(blockIdx.x) * 16 * kRowGroups, q0 = qblock + 16 * rg;
  const T* qb = q + b * Nq * C + hd * d;
  const T* kb = k + b * Nk * C + hd * d;
  const T* vb = v + b * Nk * C + hd * d;

  // This warp's Q fragments, read once from global memory (zero beyond Nq and d).
  auto qval = [&](int64_t r, int c) { return q0 + r < Nq && c < d ? qb[(q0 + r) * C + c] : T(0.f); };
  uint32_t qa[kSlice / 16][4];
  for (int kk = 0; kk < kSlice / 16; kk++) {
    int c = d0 + kk * 16 + 2 * t;
    qa[kk][0] = pack(qval(g, c), qval(g, c + 1));
    qa[kk][1] = pack(qval(g + 8, c), qval(g + 8, c + 1));
    qa[kk][2] = pack(qval(g, c + 8), qval(g, c + 9));
    qa[kk][3] = pack(qval(g + 8, c + 8), qval(g + 8, c + 9));
  }
  float o[kSlice / 8][4] = {};
  float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};
  int64_t kv_end = causal ? (qblock + 16 * kRowGroups < Nk ? qblock + 16 * kRowGroups : Nk) : Nk;
  KvStage<kBN, kDP, 128 * kRowGroups> stage;
  if (VEC) stage.load(kb, vb, 0, Nk, C, d);
  for (int64_t k0 = 0; k0 < kv_end; k0 += kBN) {
    __syncthreads();  // the previous tile and its partial scores are consumed
    if (VEC) {
      stage.store(sk, sv);
      if (k0 + kBN < kv_end) stage.load(kb, vb, k0 + kBN, Nk, C, d);
    } else {
      load_kv(sk, sv, kb, vb, k0, Nk, C, d);
    }
    __syncthreads();
    for (int j = 0; j < kBN / 8; j++) {
      float part[4] = {0.f, 0.f, 0.f, 0.f};
      for (int kk = 0; kk < kSlice / 16; kk += 2) {
        uint32_t kf[4];
        ldmatrix_x4<false>(kf, &sk[j * 8 + lr][d0 + kk * 16 + lm * 8]);
        uint32_t b0[2] = {kf[0], kf[1]}, b1[2] = {kf[2], kf[3]};
        mma_m16n8k16<kBf16>(part, qa[kk], b0, part);
        mma_m16n8k16<kBf16>(part, qa[kk + 1], b1, part);
      }
      for (int i = 0; i < 4; i++) sp[rg][warp % 4][g + (i >> 1) * 8][j * 8 + 2 * t + (i & 1)] = part[i];
    }
    __syncthreads();
    float s[kBN / 8][4];
    for (int j = 0; j < kBN / 8; j++)
      for (int i = 0; i < 4; i++) {
        int r = g + (i >> 1) * 8, key = j * 8 + 2 * t + (i & 1);
        s[j][i] = sp[rg][0][r][key] + sp[rg][1][r][key] + sp[rg][2][r][key] + sp[rg][3][r][key];
      }
    softmax_step(s, o, mrow, lrow, q0 + g, k0, t, Nk, causal, scale);
    uint32_t pa[4] = {pack_f<T>(s[0][0], s[0][1]), pack_f<T>(s[0][2], s[0][3]), pack_f<T>(s[1][0], s[1][1]), pack_f<T>(s[1][2], s[1][3])};
    for (int n = 0; n < kSlice / 8; n += 2) {
      uint32_t vf[4];
      ldmatrix_x4<true>(vf, &sv[(lm & 1) * 8 + lr][d0 + (n + (lm >> 1)) * 8]);
      uint32_t b0[2] = {vf[0], vf[1]}, b1[2] = {vf[2], vf[3]};
      mma_m16n8k16<kBf16>(o[n], pa, b0, o[n]);
      mma_m16n8k16<kBf16>(o[n + 1], pa, b1, o[n + 1]);
    }
  }
  write_rows(o, lrow, y + b * Nq * C + hd * d, q0 + g, d0, Nq, C, d, t);
}

}  // namespace

#define C(p) static_cast<const T*>(p)
#define M(p) static_cast<T*>(p)

void attention(const void* q, const void* k, const void* v, void* y, int64_t B, int64_t Nq, int64_t Nk, int64_t Ch, int heads, bool causal,
               bool wide, cudaStream_t s) {
  int64_t d = Ch / heads;
  float scale = 1.f / sqrtf(float(d));
  // Head dim 64 takes 32 query rows a warp (two row tiles, 128 a block), as FlashAttention-2 does;
  // PG25_ATTENTION_ROWS=16 keeps one tile a warp (64 a block), for comparison. Wider heads keep one.
  const char* rows_env = platform::env("PG25_ATTENTION_ROWS");
  bool two = !(rows_env && std::strcmp(rows_env, "16") == 0);
  auto grid = [&](int rows) { return dim3(unsigned((Nq + rows - 1) / rows), unsigned(B * heads)); };
  dim3 flash = grid(4 * kWarpRows), flash2 = grid(8 * kWarpRows);
  dim3 flash_wide(unsigned((Nq + 16 * kRowGroups - 1) / (16 * kRowGroups)), unsigned(B * heads));
  auto a16 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  bool vec = d % 8 == 0 && Ch % 8 == 0 && a16(q) && a16(k) && a16(v);
  BY_TYPE(wide, {
    if (d <= 64 && vec && two) PG25_LAUNCH(k_flash_attention<T BY_COMMA 64 BY_COMMA 64 BY_COMMA 2 BY_COMMA true>, flash2, 128, 0, s)
    (C(q), C(k), C(v), M(y), Nq, Nk, Ch, heads, int(d), causal, scale);
    else if (d <= 64 && vec) PG25_LAUNCH(k_flash_attention<T BY_COMMA 64 BY_COMMA 64 BY_COMMA 1 BY_COMMA true>, flash, 128, 0, s)(
        C(q), C(k), C(v), M(y), Nq, Nk, Ch, heads, int(d), causal, scale);
    else if (d <= 64) PG25_LAUNCH(k_flash_attention<T BY_COMMA 64 BY_COMMA 64 BY_COMMA 1 BY_COMMA false>, flash, 128, 0, s)(
        C(q), C(k), C(v), M(y), Nq, Nk, Ch, heads, int(d), causal, scale);
    else if (d <= 128 && vec) PG25_LAUNCH(k_flash_attention<T BY_COMMA 128 BY_COMMA 32 BY_COMMA 1 BY_COMMA true>, flash, 128, 0, s)(
        C(q), C(k), C(v), M(y), Nq, Nk, Ch, heads, int(d), causal, scale);
    else if (d <= 128) PG25_LAUNCH(k_flash_attention<T BY_COMMA 128 BY_COMMA 32 BY_COMMA 1 BY_COMMA false>, flash, 128, 0, s)(
        C(q), C(k), C(v), M(y), Nq, Nk, Ch, heads, int(d), causal, scale);
    else if (vec) PG25_LAUNCH(k_flash_attention_wide<T BY_COMMA true>, flash_wide, 128 * kRowGroups, 0, s)(
        C(q), C(k), C(v), M(y), Nq, Nk, Ch, heads, int(d), causal, scale);
    else PG25_LAUNCH(k_flash_attention_wide<T BY_COMMA false>, flash_wide, 128 * kRowGroups, 0, s)(C(q), C(k), C(v), M(y), Nq, Nk, Ch,
                                                                                                   heads, int(d), causal, scale);
  });
}

}  // namespace pg25::cuda
