#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "../../cpu/threadpool.h"
#include "../../platform/memory.h"
#include "fiber.h"
#include "include/cuda_bf16.h"
#include "include/cuda_fp16.h"
#include "include/cuda_runtime.h"

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace pg25::emu {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kStack = 256 << 10;  // instrumented frames are larger
#else
constexpr size_t kStack = 64 << 10;
#endif
constexpr int kMaxThreads = 1024;
constexpr size_t kMaxShared = 227 << 10;  // the most an H100 block can opt into

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::ShflIdx: return "__shfl_sync";
    case WarpOp::ShflUp: return "__shfl_up_sync";
    case WarpOp::ShflDown: return "__shfl_down_sync";
    case WarpOp::ShflXor: return "__shfl_xor_sync";
    case WarpOp::Ballot: return "__ballot_sync";
    case WarpOp::All: return "__all_sync";
    case WarpOp::Any: return "__any_sync";
    case WarpOp::Sync: return "__syncwarp";
    case WarpOp::Mma: return "mma.sync.m16n8k16";
    case WarpOp::Ldmatrix: return "ldmatrix.sync.m8n8.x4";
  }
  return "?";
}

std::string hex(unsigned v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08x", v);
  return b;
}

// One lane's operands of an emulated mma.sync (see native/cuda/mma.h for the layouts).
struct MmaLane {
  const uint32_t* a;
  const uint32_t* b;
  const float* c;
  float* d;
  bool bf16;
};

float half16(uint32_t reg, int hi, bool bf16) {
  uint16_t v = uint16_t(hi ? reg >> 16 : reg & 0xffffu);
  return bf16 ? bf16_bits_to_float(v) : half_bits_to_float(v);
}

// D = A B + C for a whole warp, the matrices assembled from each lane's registers by the PTX ISA's
// fragment layouts for m16n8k16 with 16-bit inputs and fp32 accumulators.
void mma_warp(const MmaLane* lanes[32]) {
  float A[16][16], B[16][8], D[16][8];
  for (int lane = 0; lane < 32; lane++) {
    const MmaLane& l = *lanes[lane];
    int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 8; i++) A[g + ((i >> 1) & 1) * 8][2 * t + (i & 1) + (i >> 2) * 8] = half16(l.a[i >> 1], i & 1, l.bf16);
    for (int i = 0; i < 4; i++) B[2 * t + (i & 1) + (i >> 1) * 8][g] = half16(l.b[i >> 1], i & 1, l.bf16);
    for (int i = 0; i < 4; i++) D[g + (i >> 1) * 8][2 * t + (i & 1)] = l.c[i];
  }
  for (int r = 0; r < 16; r++)
    for (int n = 0; n < 8; n++) {
      float acc = D[r][n];
      for (int k = 0; k < 16; k++) acc += A[r][k] * B[k][n];
      D[r][n] = acc;
    }
  for (int lane = 0; lane < 32; lane++) {
    int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++) lanes[lane]->d[i] = D[g + (i >> 1) * 8][2 * t + (i & 1)];
  }
}

// One lane's operands of an emulated ldmatrix.x4: the row it addresses, where its four registers go.
struct LdmatrixLane {
  const void* row;
  uint32_t* r;
  bool trans;
};

// ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16 for a whole warp, by the PTX ISA: lanes 8i..8i+7
// address the rows of matrix i (8 16-bit values each, 16-byte aligned); lane l receives in r[i] row
// l/4, columns 2(l%4) and 2(l%4)+1 of matrix i, or with .trans column l/4, rows 2(l%4) and 2(l%4)+1.
// Returns why the warp's operands are invalid, or empty.
std::string ldmatrix_warp(const LdmatrixLane* lanes[32]) {
  uint16_t m[4][8][8];
  for (int l = 0; l < 32; l++) {
    if (lanes[l]->trans != lanes[0]->trans) return "lanes disagree on .trans";
    if (reinterpret_cast<uintptr_t>(lanes[l]->row) % 16) return "lane " + std::to_string(l) + "'s row address is not 16-byte aligned";
    std::memcpy(m[l / 8][l % 8], lanes[l]->row, 16);
  }
  for (int l = 0; l < 32; l++) {
    int a = l / 4, b = 2 * (l % 4);
    for (int i = 0; i < 4; i++) {
      uint16_t lo = lanes[0]->trans ? m[i][b][a] : m[i][a][b], hi = lanes[0]->trans ? m[i][b + 1][a] : m[i][a][b + 1];
      lanes[l]->r[i] = uint32_t(lo) | uint32_t(hi) << 16;
    }
  }
  return "";
}

struct Lane {
  enum State : uint8_t { Ready, AtBarrier, AtWarp, Done };
  Context ctx;
  uint3 tid;
  State state = Ready;
  WarpOp op = WarpOp::Sync;
  unsigned mask = 0;
  int arg = 0, width = 32;
  uint64_t value = 0, result = 0;
  // cp.async copies not yet waited for: their 16 bytes read at issue, written at the wait that
  // completes their group (-1: not committed yet).
  struct AsyncCopy {
    void* dst;
    unsigned char bytes[16];
    int64_t group;
  };
  std::vector<AsyncCopy> copies;
  int64_t groups = 0;
};

// One CPU thread's machinery for running blocks: fiber stacks (with guard pages), lanes, the
// scheduler's own context. Kept for the life of the thread and reused by every block.
struct BlockRunner {
  char* stacks = nullptr;
  size_t page = 0, slot = 0;
  std::vector<Lane> lanes;
  Context sched;
  const std::function<void()>* body = nullptr;
  Lane* cur = nullptr;
  std::vector<unsigned char> dynamic;
  unsigned warp_arrived[kMaxThreads / 32];  // lanes of each warp waiting at a collective
  std::string error;

  BlockRunner() {
    page = platform::page_size();
    slot = kStack + page;
    stacks = platform::reserve_guarded_slots(kMaxThreads, slot);  // a guard page below each: overflow faults, never corrupts
    if (!stacks) {
      std::fprintf(stderr, "pg25 CUDA emulation: cannot map fiber stacks\n");
      std::abort();
    }
    lanes.resize(kMaxThreads);
  }
  ~BlockRunner() { platform::release_slots(stacks, kMaxThreads, slot); }

  static void lane_main(void* arg) {
    BlockRunner& r = *tl_runner();
    Lane* l = static_cast<Lane*>(arg);
    context_started(r.sched);
    (*r.body)();
    l->state = Lane::Done;
    switch_final(l->ctx, r.sched);
  }

  static BlockRunner* tl_runner() {
    thread_local BlockRunner r;
    return &r;
  }

  // Blocks the running lane until the scheduler resumes it.
  void yield(Lane::State s) {
    cur->state = s;
    switch_to(cur->ctx, sched);
  }

  std::string describe(const Lane& l) const {
    return "(" + std::to_string(l.tid.x) + "," + std::to_string(l.tid.y) + "," + std::to_string(l.tid.z) + ")";
  }

  // Lane `index` has arrived at a warp collective: when every lane of its mask has too, checks they
  // all called the same one and completes it. Sets `error` for a collective that can never complete.
  void arrive(int n, int index) {
    Lane& l = lanes[index];
    int base = index / 32 * 32, count = std::min(32, n - base), lane = index - base;
    if (!(l.mask >> lane & 1u)) {
      error = std::string(op_name(l.op)) + " in thread " + describe(l) + ": mask " + hex(l.mask) + " leaves out the calling lane " +
              std::to_string(lane);
      return;
    }
    if (count < 32 && (l.mask >> count)) {
      error = std::string(op_name(l.op)) + " in thread " + describe(l) + ": mask " + hex(l.mask) + " names lanes this block does not have";
      return;
    }
    if (l.width < 1 || l.width > 32 || (l.width & (l.width - 1))) {
      error = std::string(op_name(l.op)) + " in thread " + describe(l) + ": width " + std::to_string(l.width) +
              " is not a power of two up to 32";
      return;
    }
    if ((l.op == WarpOp::Mma || l.op == WarpOp::Ldmatrix) && (l.mask != 0xffffffffu || count < 32)) {
      error = std::string(op_name(l.op)) + " in thread " + describe(l) + " needs all 32 lanes of a full warp";
      return;
    }
    unsigned& arrived = warp_arrived[index / 32];
    arrived |= 1u << lane;
    if ((arrived & l.mask) != l.mask) return;  // others still to come
    uint64_t vote = 0;
    for (int j = 0; j < 32; j++) {
      if (!(l.mask >> j & 1u)) continue;
      const Lane& o = lanes[base + j];
      if (o.op != l.op || o.mask != l.mask) {
        error = "warp divergence: thread " + describe(l) + " waits at " + op_name(l.op) + " (mask " + hex(l.mask) + ") while thread " +
                describe(o) + " waits at " + op_name(o.op) + " (mask " + hex(o.mask) + ")";
        return;
      }
      vote |= uint64_t(o.value != 0) << j;
    }
    if (l.op == WarpOp::Ldmatrix) {
      const LdmatrixLane* ops[32];
      for (int j = 0; j < 32; j++) ops[j] = reinterpret_cast<const LdmatrixLane*>(lanes[base + j].value);
      std::string why = ldmatrix_warp(ops);
      if (!why.empty()) {
        error = "ldmatrix.sync.m8n8.x4 in thread " + describe(l) + ": " + why;
        return;
      }
      arrived = 0;
      for (int j = 0; j < 32; j++) lanes[base + j].state = Lane::Ready;
      return;
    }
    if (l.op == WarpOp::Mma) {
      const MmaLane* ops[32];
      for (int j = 0; j < 32; j++) ops[j] = reinterpret_cast<const MmaLane*>(lanes[base + j].value);
      mma_warp(ops);
      arrived = 0;
      for (int j = 0; j < 32; j++) lanes[base + j].state = Lane::Ready;
      return;
    }
    for (int j = 0; j < 32; j++) {
      if (!(l.mask >> j & 1u)) continue;
      Lane& o = lanes[base + j];
      int w = o.width, seg = j / w * w, src = j;
      switch (o.op) {
        case WarpOp::ShflIdx: src = seg + (o.arg & (w - 1)); break;
        case WarpOp::ShflUp: src = j - seg >= o.arg ? j - o.arg : j; break;
        case WarpOp::ShflDown: src = j - seg + o.arg < w ? j + o.arg : j; break;
        case WarpOp::ShflXor: src = (j ^ o.arg) >= seg + w ? j : (j ^ o.arg); break;
        default: break;
      }
      if (src < 0 || src > 31 || !(l.mask >> src & 1u)) {
        error = std::string(op_name(o.op)) + " in thread " + describe(o) + " reads lane " + std::to_string(src) + ", outside the mask " +
                hex(l.mask);
        return;
      }
      switch (o.op) {
        case WarpOp::Ballot: o.result = vote; break;
        case WarpOp::All: o.result = (vote & l.mask) == l.mask; break;
        case WarpOp::Any: o.result = vote != 0; break;
        case WarpOp::Sync: o.result = 0; break;
        default: o.result = lanes[base + src].value;
      }
    }
    arrived &= ~l.mask;
    for (int j = 0; j < 32; j++)
      if (l.mask >> j & 1u) lanes[base + j].state = Lane::Ready;
  }

  // Why the lanes still waiting can never continue.
  std::string stuck(int n) {
    int done = 0, barrier = -1;
    for (int i = 0; i < n; i++) {
      if (lanes[i].state == Lane::Done) done++;
      if (lanes[i].state == Lane::AtBarrier && barrier < 0) barrier = i;
    }
    for (int i = 0; i < n; i++) {
      const Lane& l = lanes[i];
      if (l.state != Lane::AtWarp) continue;
      int base = i / 32 * 32;
      for (int j = 0; j < 32; j++) {
        if (!(l.mask >> j & 1u) || base + j >= n) continue;
        const Lane& o = lanes[base + j];
        if (o.state == Lane::Done)
          return std::string(op_name(l.op)) + " in thread " + describe(l) + ": lane " + std::to_string(j) + " of mask " + hex(l.mask) +
                 " has exited";
        if (o.state == Lane::AtBarrier)
          return std::string(op_name(l.op)) + " in thread " + describe(l) + ": lane " + std::to_string(j) + " of mask " + hex(l.mask) +
                 " waits at __syncthreads instead";
      }
    }
    if (barrier >= 0 && done > 0) {
      for (int i = 0; i < n; i++)
        if (lanes[i].state == Lane::Done)
          return "__syncthreads in thread " + describe(lanes[barrier]) + " is never reached by thread " + describe(lanes[i]) +
                 ", which has exited";
    }
    return "the block's threads wait on each other";
  }

  std::string run_block(int n) {
    error.clear();
    for (int i = 0; i < n; i++) {
      Lane& l = lanes[i];
      l.state = Lane::Ready;
      l.copies.clear();
      l.groups = 0;
      l.tid = {unsigned(i % blockDim.x), unsigned(i / blockDim.x % blockDim.y), unsigned(i / (blockDim.x * blockDim.y))};
      make_context(l.ctx, stacks + slot * i + page, kStack, lane_main, &l);
    }
    int warps = (n + 31) / 32;
    std::fill(warp_arrived, warp_arrived + warps, 0u);
    int done = 0;
    while (done < n) {
      bool ran = false;
      // Warp by warp: a warp keeps the CPU while its collectives complete, as lockstep lanes would.
      for (int w = 0; w < warps && error.empty(); w++) {
        int end = std::min(n, w * 32 + 32);
        for (bool again = true; again && error.empty();) {
          again = false;
          for (int i = w * 32; i < end && error.empty(); i++) {
            Lane& l = lanes[i];
            if (l.state != Lane::Ready) continue;
            threadIdx = l.tid;
            cur = &l;
            switch_to(sched, l.ctx);
            ran = again = true;
            if (l.state == Lane::Done) {
              done++;
              if (!l.copies.empty())
                error =
                    "thread " + describe(l) + " exited with " + std::to_string(l.copies.size()) + " cp.async copies it never waited for";
            } else if (l.state == Lane::AtWarp) arrive(n, i);
          }
        }
      }
      if (!error.empty()) return error;
      if (done == n) break;
      int at_barrier = 0;
      for (int i = 0; i < n; i++) at_barrier += lanes[i].state == Lane::AtBarrier;
      if (at_barrier == n) {
        for (int i = 0; i < n; i++) lanes[i].state = Lane::Ready;
        continue;
      }
      if (!ran) return stuck(n);
    }
    return {};
  }
};

// The runner of the block this CPU thread is running (set by run_grid), read by every collective.
thread_local BlockRunner* tl_current = nullptr;
BlockRunner& runner() { return *tl_current; }

}  // namespace

uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int arg, int width) {
  BlockRunner& r = runner();
  Lane* l = r.cur;
  l->op = op;
  l->mask = mask;
  l->value = value;
  l->arg = arg;
  l->width = width;
  r.yield(Lane::AtWarp);
  return l->result;
}

void syncthreads() { runner().yield(Lane::AtBarrier); }

void cp_async16(void* smem, const void* gmem, bool valid) {
  BlockRunner& r = runner();
  if (reinterpret_cast<uintptr_t>(smem) % 16 || (valid && reinterpret_cast<uintptr_t>(gmem) % 16)) {
    if (r.error.empty()) r.error = "cp.async in thread " + r.describe(*r.cur) + ": addresses not 16-byte aligned";
    return;
  }
  Lane::AsyncCopy c{smem, {}, -1};
  if (valid) std::memcpy(c.bytes, gmem, 16);
  r.cur->copies.push_back(c);
}

void cp_async_commit() {
  Lane* l = runner().cur;
  for (auto& c : l->copies)
    if (c.group < 0) c.group = l->groups;
  l->groups++;
}

void cp_async_wait(int pending) {
  Lane* l = runner().cur;
  int64_t complete = l->groups - pending;  // groups [0, complete) have landed
  size_t kept = 0;
  for (auto& c : l->copies) {
    if (c.group >= 0 && c.group < complete) std::memcpy(c.dst, c.bytes, 16);
    else l->copies[kept++] = c;
  }
  l->copies.resize(kept);
}

void ldmatrix_x4(uint32_t* r, const void* row, bool trans) {
  LdmatrixLane self{row, r, trans};
  warp_collective(WarpOp::Ldmatrix, 0xffffffffu, reinterpret_cast<uint64_t>(&self), 0, warpSize);
}

void mma_m16n8k16(float* d, const uint32_t* a, const uint32_t* b, const float* c, bool bf16) {
  MmaLane self{a, b, c, d, bf16};
  warp_collective(WarpOp::Mma, 0xffffffffu, reinterpret_cast<uint64_t>(&self), 0, warpSize);
}

unsigned active_mask() {
  BlockRunner& r = runner();
  int index = int(r.cur - r.lanes.data()), base = index / 32 * 32;
  int n = int(blockDim.x * blockDim.y * blockDim.z);
  unsigned m = 0;
  for (int j = 0; j < 32 && base + j < n; j++)
    if (r.lanes[base + j].state != Lane::Done) m |= 1u << j;
  return m;
}

void* dynamic_shared() { return runner().dynamic.data(); }

std::string check_launch(dim3 grid, dim3 block, size_t shared_bytes) {
  uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > kMaxThreads || block.z > 64)
    return "block (" + std::to_string(block.x) + "," + std::to_string(block.y) + "," + std::to_string(block.z) +
           ") is not a valid block shape (at most 1024 threads)";
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    return "grid (" + std::to_string(grid.x) + "," + std::to_string(grid.y) + "," + std::to_string(grid.z) + ") is not a valid grid";
  if (shared_bytes > kMaxShared)
    return std::to_string(shared_bytes) + " bytes of dynamic shared memory exceed the 227 KiB a block can have";
  return {};
}

std::string run_grid(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes, const std::function<void()>& body) {
  int64_t blocks = int64_t(grid.x) * grid.y * grid.z;
  int n = int(block.x * block.y * block.z);
  std::mutex mu;
  std::string failure;
  std::atomic<bool> failed{false};
  cpu::parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    BlockRunner& r = *BlockRunner::tl_runner();
    tl_current = &r;
    for (int64_t b = b0; b < b1 && !failed.load(std::memory_order_relaxed); b++) {
      blockIdx = {unsigned(b % grid.x), unsigned(b / grid.x % grid.y), unsigned(b / (int64_t(grid.x) * grid.y))};
      blockDim = block;
      gridDim = grid;
      r.body = &body;
      r.dynamic.assign(shared_bytes, 0xff);  // uninitialised shared memory reads as NaN
      std::string e = r.run_block(n);
      if (!e.empty()) {
        std::lock_guard<std::mutex> g(mu);
        if (!failed.exchange(true))
          failure = std::string("kernel ") + kernel + ", block (" + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) + "," +
                    std::to_string(blockIdx.z) + "): " + e;
      }
    }
  });
  return failure;
}

}  // namespace pg25::emu
