#include "gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm_kernels.h"
#include "isa.h"
#include "threadpool.h"

namespace pg25::cpu {
namespace {

// Blocking: a KC-deep B micro-panel (32 x 256 floats = 32 KiB with AVX-512) stays in L1 while the
// MC x KC block of A (~170 KiB) is read from L2; NC columns of B per pass.
constexpr int64_t KC = 256, NC = 512;
int64_t mc_for(int mr) { return int64_t(mr) * (168 / mr); }

// The packing loops, once per instruction set, as the compiler vectorises them for each.
#define PG25_PACK_NS generic
#define PG25_PACK_TARGET
#include "gemm_pack.inc"
#undef PG25_PACK_NS
#undef PG25_PACK_TARGET
#ifdef PG25_X86
#define PG25_PACK_NS avx2
#define PG25_PACK_TARGET PG25_TARGET("arch=x86-64-v3")
#include "gemm_pack.inc"
#undef PG25_PACK_NS
#undef PG25_PACK_TARGET
#define PG25_PACK_NS avx512
#define PG25_PACK_TARGET PG25_TARGET("avx512f")
#include "gemm_pack.inc"
#undef PG25_PACK_NS
#undef PG25_PACK_TARGET
#endif

struct Packers {
  void (*a_plain)(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, float*);
  void (*b_plain)(const OperandB&, int64_t, int64_t, int64_t, int64_t, int64_t, int, float*);
  void (*b_conv)(const ConvInput&, int64_t, int64_t, int64_t, int64_t, int64_t, int, float*);
};

const Packers& packers() {
#ifdef PG25_X86
  static const Packers table[kIsaCount] = {{generic::pack_a_plain, generic::pack_b_plain, generic::pack_b_conv},
                                           {avx2::pack_a_plain, avx2::pack_b_plain, avx2::pack_b_conv},
                                           {avx512::pack_a_plain, avx512::pack_b_plain, avx512::pack_b_conv}};
#else
  static const Packers generic_only{generic::pack_a_plain, generic::pack_b_plain, generic::pack_b_conv};
  static const Packers table[kIsaCount] = {generic_only, generic_only, generic_only};
#endif
  static const Packers& chosen = table[int(cpu_isa())];
  return chosen;
}

struct Job {
  int64_t M, N, K;
  const OperandA& a;
  const OperandB& b;
  float* C;
  int64_t ldc;
  const Epilogue& e;
};

// Where the micro-kernel's sums for C[i0.., j0..] go; the epilogue's terms are added with the first K block.
Tile tile_at(const Job& job, int64_t i0, int64_t j0, int rows, int cols, bool first) {
  const Epilogue& e = job.e;
  return {job.C + i0 * job.ldc + j0,
          job.ldc,
          rows,
          cols,
          !first || e.accumulate,
          first && e.row_bias ? e.row_bias + i0 : nullptr,
          first && e.col_bias ? e.col_bias + j0 : nullptr,
          first && e.residual ? e.residual + i0 * job.ldc + j0 : nullptr};
}

// One tile of C: rows [m0, m0 + mt), columns [n0, n0 + nt); m0 and n0 are multiples of the panel widths.
void gemm_tile(const Job& job, int64_t m0, int64_t mt, int64_t n0, int64_t nt) {
  const MicroKernel& mk = micro_kernel();
  const int mr = mk.mr, nr = mk.nr;
  const int64_t MC = mc_for(mr);
  thread_local std::vector<float> abuf, bbuf;
  const bool b_pre = job.b.packed || job.b.packed_half;
  if (!job.a.packed) abuf.resize(size_t(MC + mr) * KC);
  // A half-width B is widened a K block at a time for the whole tile's columns.
  if (!job.b.packed) bbuf.resize(size_t(job.b.packed_half ? (nt + nr - 1) / nr * nr : NC + nr) * KC);
  // With B prepacked nothing is packed per column block, so one block spans the tile: A is then packed
  // once per (K block, row block) instead of once per NC columns (a 10240-wide GEGLU projection: 20x).
  const int64_t ncb = b_pre ? nt : NC;
  for (int64_t jc = n0; jc < n0 + nt; jc += ncb) {
    int64_t nc = std::min(ncb, n0 + nt - jc);
    for (int64_t pc = 0; pc < job.K; pc += KC) {
      int64_t kc = std::min(KC, job.K - pc);
      const bool first = pc == 0;
      // B panel jr of this block starts at bp + (jr / nr) * bstride.
      const float* bp;
      int64_t bstride;
      if (job.b.packed) {
        bp = job.b.packed + (jc / nr) * job.K * nr + pc * nr;
        bstride = job.K * nr;
      } else {
        if (job.b.packed_half) {
          for (int64_t jr = 0; jr < nc; jr += nr)
            widen(job.b.packed_half + ((jc + jr) / nr) * job.K * nr + pc * nr, bbuf.data() + (jr / nr) * kc * nr, size_t(kc * nr),
                  job.b.half);
        } else if (job.b.conv) {
          packers().b_conv(*job.b.conv, job.N, jc, nc, pc, kc, nr, bbuf.data());
        } else {
          packers().b_plain(job.b, job.N, jc, nc, pc, kc, nr, bbuf.data());
        }
        bp = bbuf.data();
        bstride = kc * nr;
      }
      for (int64_t ic = m0; ic < m0 + mt; ic += MC) {
        int64_t mc = std::min(MC, m0 + mt - ic);
        const float* ap;
        int64_t astride;
        if (job.a.packed) {
          ap = job.a.packed + (ic / mr) * job.K * mr + pc * mr;
          astride = job.K * mr;
        } else {
          if (job.a.packed_half) {
            for (int64_t ir = 0; ir < mc; ir += mr)
              widen(job.a.packed_half + ((ic + ir) / mr) * job.K * mr + pc * mr, abuf.data() + (ir / mr) * kc * mr, size_t(kc * mr),
                    job.a.half);
          } else {
            packers().a_plain(job.a.plain, job.a.ld, job.M, ic, mc, pc, kc, mr, abuf.data());
          }
          ap = abuf.data();
          astride = kc * mr;
        }
        for (int64_t jr = 0; jr < nc; jr += nr) {
          int64_t cols = std::min<int64_t>(nr, nc - jr);
          const float* bpanel = bp + (jr / nr) * bstride;
          for (int64_t ir = 0; ir < mc; ir += mr) {
            Tile t = tile_at(job, ic + ir, jc + jr, int(std::min<int64_t>(mr, mc - ir)), int(cols), first);
            mk.run(kc, ap + (ir / mr) * astride, bpanel, t);
          }
        }
      }
    }
  }
}

// One K block [pc, pc + kc) of an operand's panels panel0.. (n rows or columns of width w) as bf16 pairs:
// a paired weight's own panels (`half`), else float32 panels (prepacked, or `staged` for this block)
// rounded into `buf`. The first panel, and the distance from one panel to the next.
struct PairBlock {
  const uint16_t* first;
  int64_t stride;
};
PairBlock pair_block(const uint16_t* half, const float* packed, const float* staged, int64_t panel0, int64_t n, int64_t K, int64_t pc,
                     int64_t kc, int w, uint16_t* buf) {
  if (half) {
    const int64_t Kp = K + (K & 1);
    return {half + panel0 * Kp * w + pc * w, Kp * w};
  }
  const int64_t stride = (kc + 1) / 2 * w * 2;
  for (int64_t q = 0; q * w < n; q++)
    bf16_pairs(packed ? packed + (panel0 + q) * K * w + pc * w : staged + q * kc * w, kc, w, buf + q * stride);
  return {buf, stride};
}

// The same product for a bf16 weight on the AVX512-BF16 kernel: the weight's panels are stored paired
// (pack_panels) and read as they are; each K block of the other operand is rounded to bf16 pairs from the
// float32 panels the usual packers make (a stride-1 convolution's are packed straight into pairs). The sums
// stay float32, in K order whatever the tiling, as gemm_tile's (each vdpbf16ps adds a pair of K steps'
// products before accumulating).
void gemm_tile_bf16(const Job& job, const MicroKernelBf16& mk, int64_t m0, int64_t mt, int64_t n0, int64_t nt) {
  const int mr = mk.mr, nr = mk.nr;
  const int64_t MC = mc_for(mr);
  const bool b_pre = job.b.packed || job.b.packed_half;
  const int64_t ncb = b_pre ? nt : NC, ncols = (std::min(ncb, nt) + nr - 1) / nr * nr;
  thread_local std::vector<float> fbuf;
  thread_local std::vector<uint16_t> apairs, bpairs;
  // Scratch only for what is staged: A always (rounded to pairs), B unless it is a paired bf16 weight.
  fbuf.resize(size_t(b_pre ? MC + mr : std::max(MC + mr, ncols)) * KC);
  apairs.resize(size_t(MC + mr) * KC);
  if (!job.b.packed_half) bpairs.resize(size_t(ncols) * KC);
  for (int64_t jc = n0; jc < n0 + nt; jc += ncb) {
    int64_t nc = std::min(ncb, n0 + nt - jc);
    for (int64_t pc = 0; pc < job.K; pc += KC) {
      const int64_t kc = std::min(KC, job.K - pc), kc2 = (kc + 1) / 2;
      const bool first = pc == 0;
      PairBlock b{bpairs.data(), kc2 * nr * 2};
      if (!job.b.conv || !pack_conv_bf16_pairs(*job.b.conv, job.N, jc, nc, pc, kc, nr, bpairs.data())) {
        if (job.b.conv) packers().b_conv(*job.b.conv, job.N, jc, nc, pc, kc, nr, fbuf.data());
        else if (!b_pre) packers().b_plain(job.b, job.N, jc, nc, pc, kc, nr, fbuf.data());
        b = pair_block(job.b.packed_half, job.b.packed, fbuf.data(), jc / nr, nc, job.K, pc, kc, nr, bpairs.data());
      }
      for (int64_t ic = m0; ic < m0 + mt; ic += MC) {
        int64_t mc = std::min(MC, m0 + mt - ic);
        if (!job.a.packed && !job.a.packed_half) packers().a_plain(job.a.plain, job.a.ld, job.M, ic, mc, pc, kc, mr, fbuf.data());
        const PairBlock a = pair_block(job.a.packed_half, job.a.packed, fbuf.data(), ic / mr, mc, job.K, pc, kc, mr, apairs.data());
        for (int64_t jr = 0; jr < nc; jr += nr) {
          int64_t cols = std::min<int64_t>(nr, nc - jr);
          for (int64_t ir = 0; ir < mc; ir += mr) {
            Tile t = tile_at(job, ic + ir, jc + jr, int(std::min<int64_t>(mr, mc - ir)), int(cols), first);
            mk.run(kc2, a.first + (ir / mr) * a.stride, b.first + (jr / nr) * b.stride, t);
          }
        }
      }
    }
  }
}

}  // namespace

size_t packed_floats(int64_t rows, int64_t K, int width) { return size_t((rows + width - 1) / width * width * K); }

namespace {

// Panel p of `width` rows holds its rows k-major: element (i, k) at k * width + i, or paired at
// (k / 2) * 2 * width + 2 * i + k % 2 with K rounded up to even (the pad is zero).
template <typename T>
void pack_panels_of(const T* src, int64_t rows, int64_t K, int width, T* dst, bool paired) {
  const int64_t panels = (rows + width - 1) / width, Kp = paired ? K + (K & 1) : K;
  parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
      T* d = dst + p * Kp * width;
      for (int64_t i = 0; i < width; i++) {
        int64_t r = p * width + i;
        for (int64_t k = 0; k < Kp; k++) {
          T v = r < rows && k < K ? src[r * K + k] : T(0);
          d[paired ? (k / 2) * 2 * width + 2 * i + (k & 1) : k * width + i] = v;
        }
      }
    }
  });
}

template <typename T>
void unpack_panels_of(const T* packed, int64_t rows, int64_t K, int width, T* dst, bool paired) {
  const int64_t Kp = paired ? K + (K & 1) : K;
  for (int64_t r = 0; r < rows; r++) {
    const T* s = packed + (r / width) * Kp * width;
    const int64_t i = r % width;
    for (int64_t k = 0; k < K; k++) dst[r * K + k] = s[paired ? (k / 2) * 2 * width + 2 * i + (k & 1) : k * width + i];
  }
}

}  // namespace

void pack_panels(const float* src, int64_t rows, int64_t K, int width, float* dst) { pack_panels_of(src, rows, K, width, dst, false); }
void unpack_panels(const float* packed, int64_t rows, int64_t K, int width, float* dst) {
  unpack_panels_of(packed, rows, K, width, dst, false);
}
size_t packed_halves(int64_t rows, int64_t K, int width, bool paired) { return packed_floats(rows, paired ? K + (K & 1) : K, width); }
void pack_panels(const uint16_t* src, int64_t rows, int64_t K, int width, uint16_t* dst, bool paired) {
  pack_panels_of(src, rows, K, width, dst, paired);
}
void unpack_panels(const uint16_t* packed, int64_t rows, int64_t K, int width, uint16_t* dst, bool paired) {
  unpack_panels_of(packed, rows, K, width, dst, paired);
}
bool bf16_paired() { return micro_kernel_bf16() != nullptr; }

void gemm(int64_t M, int64_t N, int64_t K, const OperandA& a, const OperandB& b, float* C, int64_t ldc, const Epilogue& e, bool threaded) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        float& c = C[i * ldc + j];
        c = (e.accumulate ? c : 0.f) + (e.row_bias ? e.row_bias[i] : 0.f) + (e.col_bias ? e.col_bias[j] : 0.f) +
            (e.residual ? e.residual[i * ldc + j] : 0.f);
      }
    return;
  }
  const MicroKernel& mk = micro_kernel();
  Job job{M, N, K, a, b, C, ldc, e};
  // A bf16 weight runs on vdpbf16ps where the processor has it (same panel widths as the AVX-512 kernel).
  // Its operands' half panels must all be bf16 (pair_block reads them as paired bf16).
  const bool bf16_weight = (a.half == Half::BF16 || b.half == Half::BF16) && (!a.packed_half || a.half == Half::BF16) &&
                           (!b.packed_half || b.half == Half::BF16);
  const MicroKernelBf16* bf16 = bf16_weight ? micro_kernel_bf16() : nullptr;
  // Tiles in whole panels. The operand packed per call is packed once per tile that needs it, so the
  // split runs along that operand's other side first: along N when A is prepacked or B is packed per
  // call (convolutions, whose im2col columns are the costly packing), along M when B is prepacked.
  // Products under ~8 MFLOP (~30 us) run on the calling thread: waking the pool costs ~5 us a call, and
  // on the tiny model 4 MFLOP gained 7% over 1 MFLOP.
  int64_t threads = threaded && double(M) * N * K >= double(1 << 22) ? thread_count() : 1;
  int64_t want = threads == 1 ? 1 : threads * 3;
  int64_t mpanels = (M + mk.mr - 1) / mk.mr, npanels = (N + mk.nr - 1) / mk.nr;
  int64_t ntiles_m, ntiles_n;
  if (b.packed || b.packed_half) {
    ntiles_m = std::min(mpanels, want);
    ntiles_n = std::min(npanels, (want + ntiles_m - 1) / ntiles_m);
  } else {
    ntiles_n = std::min(npanels, want);
    ntiles_m = std::min(mpanels, (want + ntiles_n - 1) / ntiles_n);
  }
  int64_t mstep = (mpanels + ntiles_m - 1) / ntiles_m * mk.mr, nstep = (npanels + ntiles_n - 1) / ntiles_n * mk.nr;
  ntiles_m = (M + mstep - 1) / mstep;
  ntiles_n = (N + nstep - 1) / nstep;
  int64_t total = ntiles_m * ntiles_n;
  auto run = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      int64_t m0 = (t / ntiles_n) * mstep, n0 = (t % ntiles_n) * nstep;
      if (bf16) gemm_tile_bf16(job, *bf16, m0, std::min(mstep, M - m0), n0, std::min(nstep, N - n0));
      else gemm_tile(job, m0, std::min(mstep, M - m0), n0, std::min(nstep, N - n0));
    }
  };
  if (total > 1) parallel_for(total, 1, run);
  else run(0, total);
}

void pack_b_full(const OperandB& b, int64_t N, int64_t K, float* dst) { packers().b_plain(b, N, 0, N, 0, K, micro_kernel().nr, dst); }

void sgemm(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb, bool b_trans, float* C, int64_t ldc,
           bool accumulate, const float* bias, bool threaded) {
  OperandA a;
  a.plain = A;
  a.ld = lda;
  OperandB b;
  b.plain = B;
  b.ld = ldb;
  b.trans = b_trans;
  Epilogue e;
  e.col_bias = bias;
  e.accumulate = accumulate;
  gemm(M, N, K, a, b, C, ldc, e, threaded);
}

}  // namespace pg25::cpu
