#include "tensor.h"

#include <algorithm>

#include "../core/error.h"

namespace pg25 {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); i++) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

ConcatPlan plan_concat(const Tensor& a, const Tensor& b, int axis) {
  int r = a.rank();
  if (axis < 0) axis += r;
  bool ok = b.rank() == r && axis >= 0 && axis < r;
  for (int i = 0; ok && i < r; i++) ok = i == axis || a.dim(i) == b.dim(i);
  if (!ok)
    throw Error(Code::InvalidArgument,
                "concat: " + shape_str(a.shape) + " and " + shape_str(b.shape) + " do not join on axis " + std::to_string(axis));
  if (a.layout != b.layout) throw Error(Code::Internal, "concat: the inputs are in different layouts (NCHW and NHWC)");
  ConcatPlan p{a.shape, 1, 1, 1};
  p.shape[axis] += b.dim(axis);
  // The dimensions in memory order, and where `axis` lies among them.
  std::vector<int> order(static_cast<size_t>(r));
  for (int i = 0; i < r; i++) order[size_t(i)] = i;
  if (r == 4 && a.layout == Layout::NHWC) order = {0, 2, 3, 1};
  int at = int(std::find(order.begin(), order.end(), axis) - order.begin());
  int64_t inner = 1;
  for (int i = 0; i < at; i++) p.outer *= a.dim(order[size_t(i)]);
  for (int i = at + 1; i < r; i++) inner *= a.dim(order[size_t(i)]);
  p.a_run = a.dim(axis) * inner;
  p.b_run = b.dim(axis) * inner;
  return p;
}

}  // namespace pg25
