// A tensor is a shape over a buffer that its backend owns (host memory for the CPU backend, device
// memory for CUDA). Model code never touches the bytes; it hands tensors to Backend ops.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pg25 {

using Shape = std::vector<int64_t>;

struct Buffer {
  virtual ~Buffer() = default;
  virtual size_t bytes() const = 0;
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
