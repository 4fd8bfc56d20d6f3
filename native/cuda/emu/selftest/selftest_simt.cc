// The SIMT layer's semantics (barriers, shuffles, votes, atomics, shared memory) and its failure
// detection, checked by selftest_main.cc.
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "../../../cpu/threadpool.h"
#include "../../launch.h"
#include "selftest.h"

namespace selftest {

// Kernels on the SIMT layer, launched through PG25_LAUNCH exactly as the backend launches its own.

namespace {

unsigned flat_thread() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
unsigned flat_block() { return blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z); }

// A tree reduction in shared memory with a barrier per level; every thread also records the
// coordinates it saw, so the mapping of threads and blocks to threadIdx/blockIdx is checked too.
__global__ void block_sum_kernel(const int* in, int* block_sums, int* coords) {
  __shared__ int partial[1024];
  unsigned t = flat_thread(), n = blockDim.x * blockDim.y * blockDim.z, g = flat_block() * n + t;
  partial[t] = in[g];
  int* c = coords + size_t(g) * 6;
  c[0] = int(threadIdx.x), c[1] = int(threadIdx.y), c[2] = int(threadIdx.z);
  c[3] = int(blockIdx.x), c[4] = int(blockIdx.y), c[5] = int(blockIdx.z);
  __syncthreads();
  unsigned span = 1;
  while (span < n) span <<= 1;
  for (unsigned s = span / 2; s > 0; s >>= 1) {
    if (t < s && t + s < n) partial[t] += partial[t + s];
    __syncthreads();
  }
  if (t == 0) block_sums[flat_block()] = partial[0];
}

void check_block_reduce() {
  Stream s;
  struct Shape {
    dim3 grid, block;
  };
  // 2-D and 3-D blocks and grids, a block that is not a whole number of warps, the largest block.
  const Shape shapes[] = {{dim3(3, 2, 2), dim3(16, 8, 1)},
                          {dim3(2, 3, 1), dim3(5, 3, 2)},
                          {dim3(4, 1, 1), dim3(4, 4, 4)},
                          {dim3(2, 1, 1), dim3(32, 32, 1)},
                          {dim3(1, 1, 3), dim3(1, 1, 7)}};
  for (const Shape& sh : shapes) {
    unsigned n = sh.block.x * sh.block.y * sh.block.z, blocks = sh.grid.x * sh.grid.y * sh.grid.z;
    std::vector<int> in(size_t(n) * blocks);
    for (size_t i = 0; i < in.size(); i++) in[i] = int((i * 2654435761u) % 2001) - 1000;
    Dev<int> din(in.size()), dsums(blocks), dcoords(in.size() * 6);
    din.upload(in);
    PG25_LAUNCH(block_sum_kernel, sh.grid, sh.block, 0, s)(din.p, dsums.p, dcoords.p);
    CUDA_OK(cudaStreamSynchronize(s));
    std::vector<int> sums = dsums.download(), coords = dcoords.download();
    for (unsigned b = 0; b < blocks; b++) {
      long want = 0;
      for (unsigned t = 0; t < n; t++) want += in[size_t(b) * n + t];
      EXPECT(sums[b] == want, "block " << b << " of block (" << sh.block.x << "," << sh.block.y << "," << sh.block.z << "): sum " << sums[b]
                                       << ", want " << want);
      for (unsigned t = 0; t < n; t++) {
        const int* c = &coords[(size_t(b) * n + t) * 6];
        int want_c[6] = {int(t % sh.block.x), int(t / sh.block.x % sh.block.y), int(t / (sh.block.x * sh.block.y)),
                         int(b % sh.grid.x),  int(b / sh.grid.x % sh.grid.y),   int(b / (sh.grid.x * sh.grid.y))};
        EXPECT(std::equal(c, c + 6, want_c), "thread " << t << " of block " << b << " saw threadIdx (" << c[0] << "," << c[1] << "," << c[2]
                                                       << ") blockIdx (" << c[3] << "," << c[4] << "," << c[5] << ")");
      }
    }
  }
  EXPECT_NO_MISUSE();
}

// Shuffles: each case is run by every lane of two warps; the expected source lane follows the CUDA
// programming guide's wording, written here independently of simt.cc.
enum class Shfl { Idx, Up, Down, Xor };
struct ShflCase {
  Shfl op;
  int arg, width;
};
std::vector<ShflCase> shfl_cases() {
  std::vector<ShflCase> v;
  for (int w : {32, 16, 8}) {
    for (int src : {0, 3, w - 1, w + 5, -1, 37}) v.push_back({Shfl::Idx, src, w});
    for (int d : {1, 3, w - 1, w}) v.push_back({Shfl::Up, d, w});
    for (int d : {1, 5, w - 1, w}) v.push_back({Shfl::Down, d, w});
    for (int m : {1, 2, 5, w / 2, w - 1, 8, 16, 24, 31}) v.push_back({Shfl::Xor, m, w});
  }
  return v;
}
const std::vector<ShflCase>& kShflCases() {
  static std::vector<ShflCase> v = shfl_cases();
  return v;
}

int expected_source(const ShflCase& c, int lane) {
  int seg = lane / c.width * c.width;
  switch (c.op) {
    case Shfl::Idx: return seg + ((c.arg % c.width) + c.width) % c.width;  // srcLane modulo width, within the segment
    case Shfl::Up: return lane - c.arg >= seg ? lane - c.arg : lane;       // below the segment: the caller's own value
    case Shfl::Down: return lane + c.arg < seg + c.width ? lane + c.arg : lane;
    case Shfl::Xor: {
      int src = lane ^ c.arg;  // earlier segments may be read; a later one gives the caller's own value
      return src / c.width > lane / c.width ? lane : src;
    }
  }
  return -1;
}

__global__ void shuffle_kernel(const ShflCase* cases, int ncases, int* out, double* dsum, float* fsum, unsigned long long* wide) {
  unsigned t = threadIdx.x, lane = t % 32;
  int v = int(1000 * t + 7);
  for (int i = 0; i < ncases; i++) {
    const ShflCase& c = cases[i];
    int r = 0;
    switch (c.op) {
      case Shfl::Idx: r = __shfl_sync(0xffffffffu, v, c.arg, c.width); break;
      case Shfl::Up: r = __shfl_up_sync(0xffffffffu, v, unsigned(c.arg), c.width); break;
      case Shfl::Down: r = __shfl_down_sync(0xffffffffu, v, unsigned(c.arg), c.width); break;
      case Shfl::Xor: r = __shfl_xor_sync(0xffffffffu, v, c.arg, c.width); break;
    }
    out[size_t(i) * blockDim.x + t] = r;
  }
  // A butterfly sum of doubles (8-byte values) leaves the warp total in every lane; a shfl_down tree
  // of floats leaves it in lane 0.
  double d = 0.25 * (lane + 1);
  for (int m = 16; m > 0; m >>= 1) d += __shfl_xor_sync(0xffffffffu, d, m);
  dsum[t] = d;
  float f = float(lane);
  for (int m = 16; m > 0; m >>= 1) f += __shfl_down_sync(0xffffffffu, f, unsigned(m));
  fsum[t] = f;
  unsigned long long w = (static_cast<unsigned long long>(lane) << 40) | 0xabcdu;
  wide[t] = __shfl_sync(0xffffffffu, w, int(31 - lane));
}

void check_shuffles() {
  Stream s;
  const auto& cases = kShflCases();
  const unsigned threads = 64;  // two warps
  Dev<ShflCase> dcases(cases.size());
  Dev<int> out(cases.size() * threads);
  Dev<double> dsum(threads);
  Dev<float> fsum(threads);
  Dev<unsigned long long> wide(threads);
  dcases.upload(cases);
  PG25_LAUNCH(shuffle_kernel, 1, threads, 0, s)(dcases.p, int(cases.size()), out.p, dsum.p, fsum.p, wide.p);
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<int> got = out.download();
  static const char* names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync"};
  for (size_t i = 0; i < cases.size(); i++) {
    const ShflCase& c = cases[i];
    for (unsigned t = 0; t < threads; t++) {
      int lane = int(t % 32), warp = int(t / 32);
      int want = 1000 * (warp * 32 + expected_source(c, lane)) + 7;
      EXPECT(got[i * threads + t] == want,
             names[int(c.op)] << "(arg " << c.arg << ", width " << c.width << ") in lane " << lane << " of warp " << warp << ": got lane "
                              << (got[i * threads + t] - 7) / 1000 % 32 << ", want lane " << expected_source(c, lane));
    }
  }
  std::vector<double> d = dsum.download();
  std::vector<float> f = fsum.download();
  std::vector<unsigned long long> w = wide.download();
  for (unsigned t = 0; t < threads; t++) {
    unsigned lane = t % 32;
    EXPECT(d[t] == 0.25 * 528, "double butterfly sum in lane " << lane << " = " << d[t] << ", want 132");
    if (lane == 0) EXPECT(f[t] == 496.f, "float shfl_down sum in lane 0 = " << f[t] << ", want 496");
    EXPECT(w[t] == ((static_cast<unsigned long long>(31 - lane) << 40) | 0xabcdu),
           "64-bit __shfl_sync in lane " << lane << " = " << hex(unsigned(w[t] >> 32)));
  }
  EXPECT_NO_MISUSE();
}

// Votes over the whole warp, and collectives on disjoint half-warp masks (legal divergence since Volta).
__global__ void vote_kernel(unsigned* out) {
  unsigned t = threadIdx.x, lane = t % 32;
  unsigned* o = out + size_t(t) * 10;
  o[0] = __ballot_sync(0xffffffffu, lane % 3 == 0);
  o[1] = __ballot_sync(0xffffffffu, t >= 40);
  o[2] = unsigned(__all_sync(0xffffffffu, 1));
  o[3] = unsigned(__all_sync(0xffffffffu, lane != 7));
  o[4] = unsigned(__any_sync(0xffffffffu, lane == 7));
  o[5] = unsigned(__any_sync(0xffffffffu, 0));
  if (lane < 16) {
    o[6] = __ballot_sync(0x0000ffffu, lane & 1);
    o[7] = unsigned(__all_sync(0x0000ffffu, lane < 16));
  } else {
    o[6] = unsigned(__any_sync(0xffff0000u, lane == 20));
    o[7] = __ballot_sync(0xffff0000u, lane >= 24);
  }
  // A shuffle among lanes 8..15 only; the other lanes take no part.
  o[8] = (lane >= 8 && lane < 16) ? unsigned(__shfl_sync(0x0000ff00u, int(100 + lane), 9)) : 0u;
  o[9] = __ballot_sync(0xffffffffu, 1);
}

void check_votes() {
  Stream s;
  Dev<unsigned> out(64 * 10);
  PG25_LAUNCH(vote_kernel, 1, 64, 0, s)(out.p);
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<unsigned> o = out.download();
  for (unsigned t = 0; t < 64; t++) {
    unsigned lane = t % 32, warp = t / 32, mod3 = 0, ge40 = 0, odd = 0, ge24 = 0;
    for (unsigned j = 0; j < 32; j++) {
      mod3 |= unsigned(j % 3 == 0) << j;
      ge40 |= unsigned(warp * 32 + j >= 40) << j;
      odd |= unsigned(j < 16 && (j & 1)) << j;
      ge24 |= unsigned(j >= 24) << j;
    }
    const unsigned want[10] = {
        mod3, ge40, 1, 0, 1, 0, lane < 16 ? odd : 1u, lane < 16 ? 1u : ge24, (lane >= 8 && lane < 16) ? 109u : 0u, 0xffffffffu};
    for (int k = 0; k < 10; k++)
      EXPECT(o[t * 10 + k] == want[k], "vote " << k << " in thread " << t << " = " << hex(o[t * 10 + k]) << ", want " << hex(want[k]));
  }
  EXPECT_NO_MISUSE();
}

// Lanes of a warp run one after another on the CPU: a value another lane writes before __syncwarp is
// visible after it only if __syncwarp really waits for the lanes of its mask.
__global__ void syncwarp_kernel(int* out) {
  __shared__ int slot[64];
  __shared__ int half_slot[64];
  unsigned t = threadIdx.x, lane = t % 32, base = t - lane;
  slot[t] = int(3 * t + 1);
  __syncwarp();
  out[t] = slot[base + (lane + 1) % 32];
  // The two halves of each warp synchronise separately.
  half_slot[t] = int(5 * t);
  unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u, hbase = t - lane % 16;
  __syncwarp(mask);
  out[64 + t] = half_slot[hbase + (lane % 16 + 15) % 16];
}

void check_syncwarp() {
  Stream s;
  Dev<int> out(128);
  PG25_LAUNCH(syncwarp_kernel, 1, 64, 0, s)(out.p);
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<int> o = out.download();
  for (unsigned t = 0; t < 64; t++) {
    unsigned lane = t % 32, base = t - lane, hbase = t - lane % 16;
    EXPECT(o[t] == int(3 * (base + (lane + 1) % 32) + 1), "thread " << t << " read " << o[t] << " after __syncwarp()");
    EXPECT(o[64 + t] == int(5 * (hbase + (lane % 16 + 15) % 16)),
           "thread " << t << " read " << o[64 + t] << " after __syncwarp(half mask)");
  }
  EXPECT_NO_MISUSE();
}

// Atomics from blocks that run at the same time on different CPU threads. The first blocks wait (a
// bounded time) until two blocks overlap, so the check always exercises real concurrency.
std::mutex g_cpu_mu;
std::set<std::thread::id> g_cpu_threads;
std::atomic<int> g_active_blocks{0}, g_max_active{0};
std::atomic<bool> g_wait_for_overlap{false};  // until two blocks have overlapped, or waiting timed out once

__global__ void atomics_kernel(int* count, float* fsum, long long* tsum, int* maxv, unsigned* cas_hits) {
  unsigned t = flat_thread(), n = blockDim.x * blockDim.y * blockDim.z, g = flat_block() * n + t;
  if (t == 0) {
    {
      std::lock_guard<std::mutex> lock(g_cpu_mu);
      g_cpu_threads.insert(std::this_thread::get_id());
    }
    int now = ++g_active_blocks, seen = g_max_active.load();
    while (now > seen && !g_max_active.compare_exchange_weak(seen, now)) {
    }
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (g_wait_for_overlap.load() && g_max_active.load() < 2) {
      if (std::chrono::steady_clock::now() > until) g_wait_for_overlap = false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  __syncthreads();
  atomicAdd(count, 1);
  atomicAdd(fsum, 0.5f);
  atomicAdd(tsum, static_cast<long long>(t));
  atomicMax(maxv, int(g));
  // Exactly one thread of the grid wins each CAS slot.
  if (atomicCAS(&cas_hits[g % 16], 0u, g + 1) == 0u) atomicAdd(&cas_hits[16], 1u);
  __syncthreads();
  if (t == 0) --g_active_blocks;
}

void check_atomics() {
  Stream s;
  const dim3 grid(16, 8, 2), block(8, 8, 2);  // 256 blocks of 128 threads
  const long blocks = 256, n = 128, total = blocks * n;
  Dev<int> count(1), maxv(1);
  Dev<float> fsum(1);
  Dev<long long> tsum(1);
  Dev<unsigned> cas(17);
  CUDA_OK(cudaMemsetAsync(count.p, 0, sizeof(int), s));
  CUDA_OK(cudaMemsetAsync(maxv.p, 0, sizeof(int), s));
  CUDA_OK(cudaMemsetAsync(fsum.p, 0, sizeof(float), s));
  CUDA_OK(cudaMemsetAsync(tsum.p, 0, sizeof(long long), s));
  CUDA_OK(cudaMemsetAsync(cas.p, 0, 17 * sizeof(unsigned), s));
  g_cpu_threads.clear();
  g_max_active = 0;
  g_wait_for_overlap = pg25::cpu::thread_count() > 1;
  for (int rep = 0; rep < 3; rep++) PG25_LAUNCH(atomics_kernel, grid, block, 0, s)(count.p, fsum.p, tsum.p, maxv.p, cas.p);
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(count.download()[0] == 3 * total, "atomicAdd(int) count " << count.download()[0] << ", want " << 3 * total);
  EXPECT(fsum.download()[0] == 0.5f * 3 * total, "atomicAdd(float) sum " << fsum.download()[0] << ", want " << 0.5 * 3 * total);
  EXPECT(tsum.download()[0] == 3 * blocks * (n * (n - 1) / 2), "atomicAdd(long long) sum " << tsum.download()[0]);
  EXPECT(maxv.download()[0] == total - 1, "atomicMax " << maxv.download()[0] << ", want " << total - 1);
  std::vector<unsigned> c = cas.download();
  EXPECT(c[16] == 16, c[16] << " atomicCAS winners for 16 slots");
  if (pg25::cpu::thread_count() > 1) {
    EXPECT(g_max_active.load() >= 2, "blocks never ran at the same time (at most " << g_max_active.load() << " at once)");
    EXPECT(g_cpu_threads.size() >= 2, "all blocks ran on " << g_cpu_threads.size() << " CPU thread(s)");
  }
  EXPECT_NO_MISUSE();
}

// Dynamic shared memory: the layer offers pg25::emu::dynamic_shared() (no `extern __shared__`
// spelling): it holds the launch's byte count, poisoned afresh for every block.
__global__ void dynamic_shared_kernel(int* out, int* stale) {
  int* dyn = static_cast<int*>(pg25::emu::dynamic_shared());
  unsigned t = threadIdx.x, n = blockDim.x;
  if (dyn[t] != -1) atomicAdd(stale, 1);  // 0xff bytes: nothing left over from the block before
  __syncthreads();
  dyn[t] = int(blockIdx.x * 1000 + t);
  __syncthreads();
  out[blockIdx.x * n + t] = dyn[n - 1 - t];
}

void check_dynamic_shared() {
  Stream s;
  const unsigned blocks = 8, threads = 256;
  Dev<int> out(blocks * threads), stale(1);
  CUDA_OK(cudaMemsetAsync(stale.p, 0, sizeof(int), s));
  PG25_LAUNCH(dynamic_shared_kernel, blocks, threads, threads * sizeof(int), s)(out.p, stale.p);
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<int> o = out.download();
  for (unsigned b = 0; b < blocks; b++)
    for (unsigned t = 0; t < threads; t++)
      EXPECT(o[b * threads + t] == int(b * 1000 + threads - 1 - t), "block " << b << " thread " << t << " read " << o[b * threads + t]);
  EXPECT(stale.download()[0] == 0, stale.download()[0] << " threads found dynamic shared memory not freshly poisoned");
  EXPECT_NO_MISUSE();
  // More than the 227 KiB a block can have is a launch error.
  PG25_LAUNCH(dynamic_shared_kernel, 1, 32, (227u << 10) + 1, s)(out.p, stale.p);
  CUDA_IS(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_MISUSE("dynamic_shared_kernel", "shared memory");
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Kernels that would hang or be undefined on a GPU: each must end as a reported kernel failure
// (cudaErrorLaunchFailure at the next synchronisation, a misuse message naming the kernel), never a
// hang, and the stream and the CPU threads must be usable afterwards.

void expect_kernel_failure(const std::function<void(cudaStream_t)>& launch, std::initializer_list<const char*> misuse_parts, int line) {
  Stream s;
  launch(s.s);
  cudaError_t e = cudaStreamSynchronize(s);
  if (e != cudaErrorLaunchFailure)
    note_failure(line, std::string("cudaStreamSynchronize after the failing kernel returned ") + cudaGetErrorName(e));
  expect_misuse(line, misuse_parts);
  cudaGetLastError();
  // Reported once, as a GPU reports a fault; then the same stream runs kernels again.
  CUDA_OK(cudaStreamSynchronize(s));
  Dev<int> d(64);
  CUDA_OK(cudaMemsetAsync(d.p, 0, 64 * sizeof(int), s));
  PG25_LAUNCH(add_kernel, 2, 32, 0, s)(d.p, 64, 3);
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<int> h = d.download();
  EXPECT(std::all_of(h.begin(), h.end(), [](int v) { return v == 3; }), "a kernel after the failure did not run correctly");
  EXPECT_NO_MISUSE();
}

namespace {

// Threads 40.. of block (1,2,0) return before a barrier the others wait at.
__global__ void skip_barrier_kernel(int* out) {
  bool culprit = blockIdx.x == 1 && blockIdx.y == 2;
  if (culprit && threadIdx.x >= 40) return;
  out[flat_block() * blockDim.x + threadIdx.x] = 1;
  __syncthreads();
  out[flat_block() * blockDim.x + threadIdx.x] = 2;
}

void check_fail_syncthreads() {
  Dev<int> out(6 * 64);
  expect_kernel_failure(
      [&](cudaStream_t s) {
        PG25_LAUNCH(skip_barrier_kernel, dim3(2, 3), 64, 0, s)
        (out.p);
      },
      {"skip_barrier_kernel", "block (1,2,0)", "__syncthreads", "exited"}, __LINE__);
}

__global__ void shfl_omits_caller_kernel(int* out) {
  out[threadIdx.x] = __shfl_sync(~(1u << 5), int(threadIdx.x), 0);  // lane 5 calls with a mask without lane 5
}

void check_fail_mask_omits_caller() {
  Dev<int> out(32);
  expect_kernel_failure(
      [&](cudaStream_t s) {
        PG25_LAUNCH(shfl_omits_caller_kernel, 1, 32, 0, s)
        (out.p);
      },
      {"shfl_omits_caller_kernel", "__shfl_sync", "leaves out the calling lane 5"}, __LINE__);
}

__global__ void shfl_exited_lane_kernel(int* out) {
  if (threadIdx.x == 31) return;
  out[threadIdx.x] = __shfl_sync(0xffffffffu, int(threadIdx.x), 0);
}

void check_fail_exited_lane() {
  Dev<int> out(32);
  expect_kernel_failure(
      [&](cudaStream_t s) {
        PG25_LAUNCH(shfl_exited_lane_kernel, 1, 32, 0, s)
        (out.p);
      },
      {"shfl_exited_lane_kernel", "__shfl_sync", "lane 31", "has exited"}, __LINE__);
}

// Odd lanes vote while even lanes shuffle, with the same full mask.
__global__ void divergent_collectives_kernel(unsigned* out) {
  unsigned lane = threadIdx.x % 32;
  if (lane & 1) out[threadIdx.x] = __ballot_sync(0xffffffffu, 1);
  else out[threadIdx.x] = unsigned(__shfl_xor_sync(0xffffffffu, int(lane), 1));
}
// Half a warp at __syncwarp, the other half at __syncthreads.
__global__ void warp_vs_barrier_kernel(unsigned* out) {
  if (threadIdx.x < 16) __syncwarp();
  else __syncthreads();
  out[threadIdx.x] = 1;
}

void check_fail_divergence() {
  Dev<unsigned> out(64);
  expect_kernel_failure(
      [&](cudaStream_t s) {
        PG25_LAUNCH(divergent_collectives_kernel, 1, 64, 0, s)
        (out.p);
      },
      {"divergent_collectives_kernel", "warp divergence", "__ballot_sync", "__shfl_xor_sync"}, __LINE__);
  expect_kernel_failure(
      [&](cudaStream_t s) {
        PG25_LAUNCH(warp_vs_barrier_kernel, 1, 32, 0, s)
        (out.p);
      },
      {"warp_vs_barrier_kernel", "__syncwarp", "waits at __syncthreads instead"}, __LINE__);
}

}  // namespace

std::vector<Check> simt_checks() {
  return {
      {"simt_block_reduce", check_block_reduce},
      {"simt_shuffles", check_shuffles},
      {"simt_votes", check_votes},
      {"simt_syncwarp", check_syncwarp},
      {"simt_atomics", check_atomics},
      {"simt_dynamic_shared", check_dynamic_shared},
      {"fail_syncthreads_skipped", check_fail_syncthreads},
      {"fail_shuffle_mask_omits_caller", check_fail_mask_omits_caller},
      {"fail_shuffle_exited_lane", check_fail_exited_lane},
      {"fail_warp_divergence", check_fail_divergence},
  };
}

}  // namespace selftest
