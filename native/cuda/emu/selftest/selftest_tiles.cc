// The instructions that move tiles for the tensor cores, as the PTX ISA defines them: ldmatrix.x4 (plain
// and .trans) and cp.async with its commit and wait groups; and their misuse reported as a kernel
// failure (a misaligned row, copies never waited for). Checked by selftest_main.cc.
#include "../../async_copy.h"
#include "../../launch.h"
#include "../../mma.h"
#include "selftest.h"

namespace selftest {
namespace {

// ldmatrix.x4 both ways against the PTX ISA's layouts: lane l addresses row l % 8 of matrix l / 8, a
// shared 32 x 8 block holding 8 * (8 * matrix + row) + column; `shift` moves every row 2 bytes off its
// 16-byte alignment (a kernel failure).
__global__ void ldmatrix_kernel(uint32_t* out, int trans, int shift) {
  alignas(16) __shared__ uint16_t tile[33][8];
  int l = int(threadIdx.x);
  for (int c = 0; c < 8; c++) tile[l][c] = uint16_t(l * 8 + c);
  __syncwarp();
  uint32_t r[4];
  const uint16_t* row = &tile[l][0] + shift;
  if (trans) pg25::cuda::ldmatrix_x4<true>(r, row);
  else pg25::cuda::ldmatrix_x4<false>(r, row);
  for (int i = 0; i < 4; i++) out[l * 4 + i] = r[i];
}

void check_ldmatrix() {
  Stream s;
  Dev<uint32_t> out(128);
  for (int trans = 0; trans < 2; trans++) {
    PG25_LAUNCH(ldmatrix_kernel, 1, 32, 0, s)(out.p, trans, 0);
    CUDA_OK(cudaStreamSynchronize(s));
    std::vector<uint32_t> o = out.download();
    for (int l = 0; l < 32; l++)
      for (int i = 0; i < 4; i++) {
        int g = l / 4, t = l % 4;  // plain: row g, columns 2t, 2t+1; .trans: column g, rows 2t, 2t+1
        uint32_t lo = trans ? (8 * i + 2 * t) * 8 + g : (8 * i + g) * 8 + 2 * t, hi = trans ? lo + 8 : lo + 1;
        EXPECT(o[size_t(l * 4 + i)] == (lo | hi << 16), (trans ? ".trans" : "plain")
                                                            << " lane " << l << " r[" << i << "] = " << o[size_t(l * 4 + i)]);
      }
  }
  EXPECT_NO_MISUSE();
}

// cp.async groups: thread t copies 16 bytes (eight uint16 values 8t..8t+7) in group 0 and, zero-filled,
// in group 1. What it reads before each wait shows when its copies land: only at the wait that completes
// their group. `wait` 0 leaves the copies pending at exit (a kernel failure).
__global__ void cp_async_kernel(const uint16_t* src, uint16_t* out, int wait) {
  alignas(16) __shared__ uint16_t a[32][8], b[32][8];
  int t = int(threadIdx.x);
  for (int c = 0; c < 8; c++) a[t][c] = b[t][c] = 7;
  pg25::cuda::cp_async16(&a[t][0], src + 8 * t, true);
  pg25::cuda::cp_async_commit();
  pg25::cuda::cp_async16(&b[t][0], src, false);
  pg25::cuda::cp_async_commit();
  if (!wait) return;
  uint16_t* o = out + t * 24;
  o[0] = a[t][0], o[1] = b[t][0];  // before any wait: nothing landed
  pg25::cuda::cp_async_wait<1>();
  o[2] = a[t][1], o[3] = b[t][1];  // group 0 landed, group 1 may still be in flight
  pg25::cuda::cp_async_wait<0>();
  for (int c = 0; c < 8; c++) o[8 + c] = a[t][c], o[16 + c] = b[t][c];
}

void check_cp_async() {
  Stream s;
  std::vector<uint16_t> host(256);
  for (int i = 0; i < 256; i++) host[size_t(i)] = uint16_t(100 + i);
  Dev<uint16_t> src(256), out(32 * 24);
  CUDA_OK(cudaMemcpyAsync(src.p, host.data(), 512, cudaMemcpyHostToDevice, s));
  PG25_LAUNCH(cp_async_kernel, 1, 32, 0, s)(src.p, out.p, 1);
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<uint16_t> o = out.download();
  for (int t = 0; t < 32; t++) {
    const uint16_t* r = &o[size_t(t * 24)];
    EXPECT(r[0] == 7 && r[1] == 7, "thread " << t << " saw copies before waiting: " << r[0] << ", " << r[1]);
    EXPECT(r[2] == 100 + 8 * t + 1 && r[3] == 7, "thread " << t << " after wait_group 1: " << r[2] << ", " << r[3]);
    for (int c = 0; c < 8; c++) {
      EXPECT(r[8 + c] == 100 + 8 * t + c, "thread " << t << " copied value " << c << " = " << r[8 + c]);
      EXPECT(r[16 + c] == 0, "thread " << t << " zero-filled value " << c << " = " << r[16 + c]);
    }
  }
  EXPECT_NO_MISUSE();
}

void check_fail_ldmatrix_misaligned() {
  Dev<uint32_t> out(128);
  expect_kernel_failure(
      [&](cudaStream_t s) {
        PG25_LAUNCH(ldmatrix_kernel, 1, 32, 0, s)
        (out.p, 0, 1);
      },
      {"ldmatrix_kernel", "ldmatrix.sync.m8n8.x4", "not 16-byte aligned"}, __LINE__);
}

void check_fail_cp_async_never_waited() {
  Dev<uint16_t> src(256), out(32 * 24);
  expect_kernel_failure(
      [&](cudaStream_t s) {
        PG25_LAUNCH(cp_async_kernel, 1, 32, 0, s)
        (src.p, out.p, 0);
      },
      {"cp_async_kernel", "exited with 2 cp.async copies it never waited for"}, __LINE__);
}

}  // namespace

std::vector<Check> tile_checks() {
  return {
      {"simt_ldmatrix", check_ldmatrix},
      {"simt_cp_async", check_cp_async},
      {"fail_ldmatrix_misaligned", check_fail_ldmatrix_misaligned},
      {"fail_cp_async_never_waited", check_fail_cp_async_never_waited},
  };
}

}  // namespace selftest
