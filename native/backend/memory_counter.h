// Bytes a backend holds now and at most since the last reset: what pipe.memory(), the leak tests and
// the GPU report's peak read.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace pg25 {

class MemoryCounter {
 public:
  void add(int64_t n) {
    int64_t v = now_ += n;
    int64_t p = peak_.load();
    while (v > p && !peak_.compare_exchange_weak(p, v)) {
    }
  }
  void sub(int64_t n) { now_ -= n; }
  size_t bytes() const { return size_t(now_.load()); }
  size_t peak() const { return size_t(peak_.load()); }
  void reset_peak() { peak_ = now_.load(); }

 private:
  std::atomic<int64_t> now_{0}, peak_{0};
};

}  // namespace pg25
