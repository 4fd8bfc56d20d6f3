#include "tensor.h"

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
  if (!ok) throw Error("PG25_INVALID_ARGUMENT", "concat: " + shape_str(a.shape) + " and " + shape_str(b.shape) + " do not join on axis " + std::to_string(axis));
  ConcatPlan p{a.shape, 1, 1, 1};
  p.shape[axis] += b.dim(axis);
  int64_t inner = 1;
  for (int i = 0; i < axis; i++) p.outer *= a.dim(i);
  for (int i = axis + 1; i < r; i++) inner *= a.dim(i);
  p.a_run = a.dim(axis) * inner;
  p.b_run = b.dim(axis) * inner;
  return p;
}

}  // namespace pg25
