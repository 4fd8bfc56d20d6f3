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

#include "../backend/memory_counter.h"
#include "../backend/tensor.h"

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

  // The plain float32 data; throws PG25_INTERNAL when the buffer holds packed panels.
  float* plain() const {
    if (layout.load(std::memory_order_acquire) != Layout::Plain) packed_read_as_plain();
    return data;
  }
  // The panels for `want` of this weight viewed as [rows, cols], packing it the first time; null for a
  // buffer that is not a weight (the caller packs per call).
  const float* panels(Layout want, int64_t rows, int64_t cols);
  // Copies into / out of the buffer whatever its layout: `src` and `dst` are plain float32.
  void write_plain(const float* src);
  void read_plain(float* dst) const;

  float* data;
  size_t count;
  size_t capacity;
  size_t alloc_bytes;
  const bool weight;
  std::atomic<Layout> layout{Layout::Plain};
  int64_t rows = 0, cols = 0;  // the matrix the panels hold
  int width = 0;               // their width

 private:
  [[noreturn]] static void packed_read_as_plain();
  std::mutex pack_mu_;
};

}  // namespace pg25::cpu
