#include "cpu_buffer.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "../core/error.h"
#include "../platform/memory.h"
#include "gemm.h"
#include "gemm_kernels.h"

namespace pg25::cpu {

MemoryCounter g_bytes;

namespace {

float* allocate(size_t n, size_t& bytes) {
  bytes = std::max<size_t>(64, (n * sizeof(float) + 63) / 64 * 64);
  auto* p = static_cast<float*>(platform::aligned_allocate(64, bytes));
  if (!p) throw Error(Code::OutOfMemory, "CPU backend: cannot allocate " + std::to_string(n * 4) + " bytes");
  g_bytes.add(int64_t(bytes));
  return p;
}

// Freed activation buffers of 16 KiB and more, kept by size for the next op that asks for that size
// (a model's calls repeat the same shapes): a fresh large allocation is fresh pages from the kernel,
// zeroed on first touch, which took 11% of a full-size UNet call. At most 512 MiB is held (the newest
// buffers); all of it goes back when the last CPU backend closes.
class BufferCache {
 public:
  // From 16 KiB: recycling the small ones too keeps RSS flat over many calls (left to malloc, with a
  // 4 MiB floor, RSS grew 9-11% over 200 tiny-model calls; with 16 KiB it fell 3-11%).
  static constexpr size_t kMin = size_t(16) << 10, kMax = size_t(512) << 20;
  float* take(size_t bytes) {
    if (bytes < kMin) return nullptr;
    std::lock_guard<std::mutex> g(mu_);
    auto it = free_.find(bytes);
    if (it == free_.end()) {
      // A miss larger than anything held takes fresh pages: as many cached bytes go back first, so
      // that a run moving on to larger tensors (a VAE decoder's up blocks) does not keep the smaller
      // ones' buffers beside them. (A model's repeated calls hit, and keep what they reuse.)
      if (!free_.empty() && free_.rbegin()->first > bytes) return nullptr;
      for (size_t freed = 0; freed < bytes && !free_.empty();) freed += release_smallest();
      return nullptr;
    }
    float* p = it->second;
    free_.erase(it);
    held_ -= bytes;
    return p;
  }
  bool put(float* p, size_t bytes) {
    if (bytes < kMin) return false;
    std::lock_guard<std::mutex> g(mu_);
    if (bytes > kMax || backends_ == 0) return false;
    // Full: the smallest buffers go first (re-faulting costs by the byte, so any order costs the same
    // per byte, and this keeps the few large ones that a model's widest layers reuse).
    while (held_ + bytes > kMax) release_smallest();
    free_.emplace(bytes, p);
    held_ += bytes;
    return true;
  }
  void backend_opened() {
    std::lock_guard<std::mutex> g(mu_);
    backends_++;
  }
  void backend_closed() {
    std::lock_guard<std::mutex> g(mu_);
    if (--backends_ > 0) return;
    for (auto& [bytes, p] : free_) platform::aligned_release(p);
    free_.clear();
    held_ = 0;
  }

 private:
  // Frees the smallest buffer held (free_ not empty; mu_ held); its bytes.
  size_t release_smallest() {
    auto it = free_.begin();
    size_t bytes = it->first;
    held_ -= bytes;
    platform::aligned_release(it->second);
    free_.erase(it);
    return bytes;
  }
  std::mutex mu_;
  std::multimap<size_t, float*> free_;
  size_t held_ = 0;
  int backends_ = 0;
};

BufferCache& cache() {
  static BufferCache* c = new BufferCache;  // never destroyed: buffers may outlive static destruction
  return *c;
}

}  // namespace

void backend_opened() { cache().backend_opened(); }
void backend_closed() { cache().backend_closed(); }

CpuBuffer::CpuBuffer(size_t n, bool w, size_t room) : count(n), capacity(std::max(n, room)), weight(w) {
  size_t bytes = std::max<size_t>(64, (capacity * sizeof(float) + 63) / 64 * 64);
  data = w ? nullptr : cache().take(bytes);
  if (data) {
    alloc_bytes = bytes;
    g_bytes.add(int64_t(bytes));
  } else {
    data = allocate(capacity, alloc_bytes);
  }
}

CpuBuffer::CpuBuffer(size_t n, Half kind, size_t room, int64_t d0)
    : data(nullptr), half(kind), count(n), capacity(std::max(n, room)), weight(true), dim0(d0) {
  // Half the floats' bytes, from the same allocator (64-byte aligned, counted in g_bytes).
  hdata = reinterpret_cast<uint16_t*>(allocate((capacity + 1) / 2, alloc_bytes));
}

CpuBuffer::~CpuBuffer() {
  if (paged_) return;  // its storage is in the scratch file, and was uncounted when it went there
  g_bytes.sub(int64_t(alloc_bytes));
  if (hdata) platform::aligned_release(hdata);
  else if (weight || !cache().put(data, alloc_bytes)) platform::aligned_release(data);
}

void CpuBuffer::widen_for_good() {
  std::lock_guard<std::mutex> g(pack_mu_);
  if (half == Half::None) return;
  page_clean_ = false;
  if (layout.load(std::memory_order_acquire) != Layout::Plain) packed_read_as_plain();
  const MicroKernel& mk = micro_kernel();
  int64_t r = dim0, c = r > 0 ? int64_t(count) / r : 0;
  size_t room = r > 0 ? std::max(packed_floats(r, c, mk.mr), packed_floats(r, c, mk.nr)) : 0;
  size_t bytes;
  float* wide = allocate(std::max(count, room), bytes);
  widen(hdata, wide, count, half);
  platform::aligned_release(hdata);
  g_bytes.sub(int64_t(alloc_bytes));
  hdata = nullptr;
  data = wide;
  capacity = std::max(count, room);
  alloc_bytes = bytes;
  half = Half::None;
}

void CpuBuffer::packed_read_as_plain() {
  throw Error(Code::Internal, "cpu backend: a weight packed for the GEMM was read as a plain tensor");
}

void CpuBuffer::paged_read() { throw Error(Code::Internal, "cpu backend: a weight paged out of memory was read"); }

void CpuBuffer::page_out(platform::FileHandle f, uint64_t& end, const std::string& where) {
  std::lock_guard<std::mutex> g(pack_mu_);
  if (paged_) return;
  void* p = hdata ? static_cast<void*>(hdata) : static_cast<void*>(data);
  if (page_slot_ < 0 || page_bytes_ != alloc_bytes) {
    page_slot_ = int64_t(end);
    page_bytes_ = alloc_bytes;
    end += alloc_bytes;
    page_clean_ = false;
  }
  if (!page_clean_ && !platform::write_at(f, uint64_t(page_slot_), p, alloc_bytes))
    throw Error(Code::OutOfMemory, "CPU backend: cannot page weights out to a scratch file in " + where + ": " + platform::last_error());
  page_clean_ = true;
  platform::aligned_release(p);
  g_bytes.sub(int64_t(alloc_bytes));
  if (hdata) hdata = nullptr;
  else data = nullptr;
  paged_ = true;
}

void CpuBuffer::page_in(platform::FileHandle f, const std::string& where) {
  std::lock_guard<std::mutex> g(pack_mu_);
  if (!paged_) return;
  void* p = platform::aligned_allocate(64, alloc_bytes);
  if (!p) throw Error(Code::OutOfMemory, "CPU backend: cannot allocate " + std::to_string(alloc_bytes) + " bytes to page a weight back in");
  if (platform::read_at(f, uint64_t(page_slot_), p, alloc_bytes) != int64_t(alloc_bytes)) {
    platform::aligned_release(p);
    throw Error(Code::Internal,
                "CPU backend: cannot read paged weights back from the scratch file in " + where + ": " + platform::last_error());
  }
  g_bytes.add(int64_t(alloc_bytes));
  if (half != Half::None) hdata = static_cast<uint16_t*>(p);
  else data = static_cast<float*>(p);
  paged_ = false;
}

void CpuBuffer::pack_once(Layout want, int64_t r, int64_t c) {
  Layout now = layout.load(std::memory_order_acquire);
  if (now == Layout::Plain) {
    std::lock_guard<std::mutex> g(pack_mu_);
    now = layout.load(std::memory_order_acquire);
    if (now == Layout::Plain) {
      const MicroKernel& mk = micro_kernel();
      int w = want == Layout::PanelsA ? mk.mr : mk.nr;
      bool pair = half == Half::BF16 && bf16_paired();
      if ((hdata ? packed_halves(r, c, w, pair) : packed_floats(r, c, w)) > capacity)
        throw Error(Code::Internal, "cpu backend: a weight buffer has no room for its packed form");
      // In place: the buffer was made large enough for either panel layout, so packing changes neither
      // its address nor the bytes it accounts for.
      page_clean_ = false;
      if (hdata) {
        std::vector<uint16_t> plain(hdata, hdata + count);
        pack_panels(plain.data(), r, c, w, hdata, pair);
        paired = pair;
      } else {
        std::vector<float> plain(data, data + count);
        pack_panels(plain.data(), r, c, w, data);
      }
      rows = r;
      cols = c;
      width = w;
      layout.store(want, std::memory_order_release);
      return;
    }
  }
  if (now != want || rows != r)
    throw Error(Code::Internal, "cpu backend: a packed weight was used as another operand than the one it was packed for");
}

const float* CpuBuffer::panels(Layout want, int64_t r, int64_t c) {
  if (paged_) paged_read();
  if (!weight || half != Half::None || size_t(r * c) != count) return nullptr;
  pack_once(want, r, c);
  return data;
}

const uint16_t* CpuBuffer::half_panels(Layout want, int64_t r, int64_t c) {
  if (paged_) paged_read();
  if (half == Half::None || size_t(r * c) != count) return nullptr;
  pack_once(want, r, c);
  return hdata;
}

void CpuBuffer::write_plain(const float* src) {
  if (paged_) paged_read();
  page_clean_ = false;
  bool plain = layout.load(std::memory_order_acquire) == Layout::Plain;
  if (hdata) {
    std::vector<uint16_t> h(count);
    narrow(src, h.data(), count, half);
    if (plain) std::memcpy(hdata, h.data(), count * 2);
    else pack_panels(h.data(), rows, cols, width, hdata, paired);
  } else if (plain) {
    std::memcpy(data, src, count * 4);
  } else {
    pack_panels(src, rows, cols, width, data);
  }
}

void CpuBuffer::read_plain(float* dst) const {
  if (paged_) paged_read();
  bool plain = layout.load(std::memory_order_acquire) == Layout::Plain;
  if (hdata) {
    std::vector<uint16_t> h(plain ? 0 : count);
    if (!plain) unpack_panels(hdata, rows, cols, width, h.data(), paired);
    widen(plain ? hdata : h.data(), dst, count, half);
  } else if (plain) {
    std::memcpy(dst, data, count * 4);
  } else {
    unpack_panels(data, rows, cols, width, dst);
  }
}

}  // namespace pg25::cpu
