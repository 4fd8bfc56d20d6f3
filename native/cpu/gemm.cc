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
      const Epilogue& e = job.e;
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
            int64_t i0 = ic + ir, j0 = jc + jr;
            Tile t{job.C + i0 * job.ldc + j0,
                   job.ldc,
                   int(std::min<int64_t>(mr, mc - ir)),
                   int(cols),
                   !first || e.accumulate,
                   first && e.row_bias ? e.row_bias + i0 : nullptr,
                   first && e.col_bias ? e.col_bias + j0 : nullptr,
                   first && e.residual ? e.residual + i0 * job.ldc + j0 : nullptr};
            mk.run(kc, ap + (ir / mr) * astride, bpanel, t);
          }
        }
      }
    }
  }
}

}  // namespace

size_t packed_floats(int64_t rows, int64_t K, int width) { return size_t((rows + width - 1) / width * width * K); }

namespace {

template <typename T>
void pack_panels_of(const T* src, int64_t rows, int64_t K, int width, T* dst) {
  int64_t panels = (rows + width - 1) / width;
  parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; p++) {
      T* d = dst + p * K * width;
      for (int64_t i = 0; i < width; i++) {
        int64_t r = p * width + i;
        if (r < rows)
          for (int64_t k = 0; k < K; k++) d[k * width + i] = src[r * K + k];
        else
          for (int64_t k = 0; k < K; k++) d[k * width + i] = T(0);
      }
    }
  });
}

template <typename T>
void unpack_panels_of(const T* packed, int64_t rows, int64_t K, int width, T* dst) {
  for (int64_t r = 0; r < rows; r++) {
    const T* s = packed + (r / width) * K * width + r % width;
    for (int64_t k = 0; k < K; k++) dst[r * K + k] = s[k * width];
  }
}

}  // namespace

void pack_panels(const float* src, int64_t rows, int64_t K, int width, float* dst) { pack_panels_of(src, rows, K, width, dst); }
void pack_panels(const uint16_t* src, int64_t rows, int64_t K, int width, uint16_t* dst) { pack_panels_of(src, rows, K, width, dst); }
void unpack_panels(const float* packed, int64_t rows, int64_t K, int width, float* dst) { unpack_panels_of(packed, rows, K, width, dst); }
void unpack_panels(const uint16_t* packed, int64_t rows, int64_t K, int width, uint16_t* dst) {
  unpack_panels_of(packed, rows, K, width, dst);
}

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
      gemm_tile(job, m0, std::min(mstep, M - m0), n0, std::min(nstep, N - n0));
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
