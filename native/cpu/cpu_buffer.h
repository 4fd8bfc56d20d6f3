// Host buffers of the CPU backend. A weight's buffer is packed, in place of its plain float32 form, the
// first time a linear layer or a convolution uses it: into the GEMM kernel's panel layout, as B for a
// linear weight [N, K] and as A for a convolution kernel [Cout, Cin*kh*kw], so no call repacks it and
// memory does not double. A weight's buffer is made with room for either layout's padding (its rows
// rounded up to the panel widths: well under 1% for real layers), so packing happens in place. Weights that other ops read (embedding tables, LoRA's originals, norms)
// are never used that way and stay plain.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include "../backend/memory_counter.h"
#include "../backend/tensor.h"
#include "../platform/file.h"
#include "half.h"

namespace pg25::cpu {

enum class Layout : int { Plain, PanelsA, PanelsB };

extern MemoryCounter g_bytes;

// Each CPU backend registers while it is open; freed buffers are cached for reuse only meanwhile.
void backend_opened();
void backend_closed();

struct CpuBuffer : Buffer {
  // n floats, allocated with room for at least `room` (a weight's packed form).
  CpuBuffer(size_t n, bool weight, size_t room = 0);
  ~CpuBuffer() override;
  size_t bytes() const override { return alloc_bytes; }

  // A weight [dim0, n / dim0] stored at half width (precision 'bf16' / 'fp16'): n values of `kind`.
  CpuBuffer(size_t n, Half kind, size_t room, int64_t dim0);

  // The plain float32 data; throws PG25_INTERNAL when the buffer holds packed panels. A half-width
  // weight that an op reads as it is (an embedding table, a LoRA original) is widened to float32 for good.
  float* plain() {
    if (paged_) paged_read();
    if (half != Half::None) widen_for_good();
    if (layout.load(std::memory_order_acquire) != Layout::Plain) packed_read_as_plain();
    return data;
  }
  // The panels for `want` of this weight viewed as [rows, cols], packing it the first time; null for a
  // buffer that is not a weight (the caller packs per call).
  const float* panels(Layout want, int64_t rows, int64_t cols);
  // The same for a half-width weight: its panels at half width (null for any other buffer).
  const uint16_t* half_panels(Layout want, int64_t rows, int64_t cols);
  // Copies into / out of the buffer whatever its layout: `src` and `dst` are plain float32.
  void write_plain(const float* src);
  void read_plain(float* dst) const;

  // A weight's storage written to its slot in a scratch file (`end`: the file's end, where a new slot
  // goes) and freed; page_in reads it back, bit for bit. A slot written once and not changed since it
  // was read back is not written again.
  void page_out(platform::FileHandle f, uint64_t& end, const std::string& where);
  void page_in(platform::FileHandle f, const std::string& where);
  bool paged_out() const { return paged_; }

  float* data;                // null while the weight is stored at half width
  uint16_t* hdata = nullptr;  // the half-width values, plain or packed as `layout` says
  Half half = Half::None;
  size_t count;
  size_t capacity;
  size_t alloc_bytes;
  const bool weight;
  std::atomic<Layout> layout{Layout::Plain};
  int64_t rows = 0, cols = 0;  // the matrix the panels hold
  int width = 0;               // their width
  bool paired = false;         // half-width panels stored as bf16 pairs (gemm.h: bf16_paired)
  int64_t dim0 = 0;            // a half-width weight's first dimension (for its float32 room if widened)

 private:
  [[noreturn]] static void packed_read_as_plain();
  [[noreturn]] static void paged_read();
  bool paged_ = false;
  int64_t page_slot_ = -1;   // offset of its slot in the scratch file, once written
  size_t page_bytes_ = 0;    // the slot's size
  bool page_clean_ = false;  // the slot holds the storage as it is
  void widen_for_good();
  // Packs in place the first time; the width for `want`, or throws if packed for the other operand.
  void pack_once(Layout want, int64_t rows, int64_t cols);
  std::mutex pack_mu_;
};

}  // namespace pg25::cpu
