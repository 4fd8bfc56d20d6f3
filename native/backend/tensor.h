// A tensor is a shape over a buffer that its backend owns (host memory for the CPU backend, device
// memory for CUDA). Model code never touches the bytes; it hands tensors to Backend ops.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace pg25 {

using Shape = std::vector<int64_t>;

struct Buffer {
  virtual ~Buffer() = default;
  virtual size_t bytes() const = 0;
  // One result derived from this buffer's values, under a key, kept exactly as long as the buffer
  // (see memo() below).
  std::mutex memo_mu;
  std::string memo_key;
  std::shared_ptr<const void> memo;
};

// How a rank-4 tensor [N, C, H, W] (an image batch, or a convolution's weight [K, C, R, S]) lies in
// memory: NCHW, row-major as its shape reads, or NHWC, channels last (the layout tensor-core
// convolutions want). The shape always reads [N, C, H, W]; tensors of other ranks are row-major.
enum class Layout : uint8_t { NCHW, NHWC };

struct Tensor {
  std::shared_ptr<Buffer> buf;
  Shape shape;
  Layout layout = Layout::NCHW;

  bool defined() const { return buf != nullptr; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t dim(int i) const { return shape[i < 0 ? int(shape.size()) + i : i]; }
  int rank() const { return int(shape.size()); }
};

std::string shape_str(const Shape& s);

// What make() derives from t's values under `key`: made on the first call, then kept with t's buffer
// and freed with it (another key replaces it). Sound because a tensor's values never change once an
// op has written them (ops never write into their inputs; only LoRA rewrites weights, and keys that
// depend on weights name their version). A UNet keeps its cross-attention keys and values here, on
// the conditioning they were projected from: made once per run instead of once per step.
template <class T, class Make>
std::shared_ptr<const T> memo(const Tensor& t, const std::string& key, Make make) {
  Buffer& b = *t.buf;
  std::lock_guard<std::mutex> lock(b.memo_mu);
  if (b.memo && b.memo_key == key) return std::static_pointer_cast<const T>(b.memo);
  auto made = std::make_shared<const T>(make());
  b.memo = made;
  b.memo_key = key;
  return made;
}

// How two tensors join along `axis`: the output shape, and the copy pattern shared by every backend
// (`outer` repetitions of a run of `a_run` elements of a, then `b_run` of b, in memory order: for NHWC
// tensors, the channel axis is the innermost). Checks ranks, layouts and the other dimensions; a
// negative axis counts from the end.
struct ConcatPlan {
  Shape shape;
  int64_t outer, a_run, b_run;
};
ConcatPlan plan_concat(const Tensor& a, const Tensor& b, int axis);

}  // namespace pg25
