#include "op_call.h"

#include <cmath>

#include "../core/error.h"

namespace pg25 {
namespace {

struct Call {
  const std::string& op;
  const OpArgs& a;

  [[noreturn]] void fail(const std::string& why) const { throw Error(Code::InvalidArgument, "op " + op + ": " + why); }
  void inputs(size_t lo, size_t hi) const {
    if (a.inputs.size() < lo || a.inputs.size() > hi)
      fail("takes " + std::to_string(lo) + (lo == hi ? "" : "-" + std::to_string(hi)) + " inputs");
    for (size_t i = 0; i < lo; i++)
      if (!a.inputs[i]) fail("input " + std::to_string(i) + " is missing");
  }
  const Tensor& in(size_t i) const { return *a.inputs[i]; }
  const Tensor* opt(size_t i) const { return i < a.inputs.size() ? a.inputs[i] : nullptr; }
  double num(const char* key) const {
    auto it = a.num.find(key);
    if (it == a.num.end() || !std::isfinite(it->second)) fail(std::string("needs a finite number \"") + key + "\"");
    return it->second;
  }
  int64_t integer(const char* key, int64_t lo, int64_t hi) const {
    double v = num(key);
    if (v != std::floor(v) || v < double(lo) || v > double(hi))
      fail(std::string("\"") + key + "\" must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return int64_t(v);
  }
  std::vector<float> floats(const char* key, size_t n) const {
    auto it = a.list.find(key);
    if (it == a.list.end() || it->second.size() != n) fail(std::string("needs \"") + key + "\" with " + std::to_string(n) + " numbers");
    return std::vector<float>(it->second.begin(), it->second.end());
  }
  void rank(const Tensor& t, int r, const char* what) const {
    if (t.rank() != r) fail(std::string(what) + " must have rank " + std::to_string(r) + ", got " + shape_str(t.shape));
    if (t.numel() == 0) fail(std::string(what) + " is empty");
  }
  void same(const Tensor& x, const Tensor& y) const {
    if (x.shape != y.shape) fail(shape_str(x.shape) + " and " + shape_str(y.shape) + " differ");
    if (x.layout != y.layout) fail("the inputs are in different layouts (NCHW and NHWC)");
  }
  void vec(const Tensor* t, int64_t n, const char* what) const {
    if (t && (t->rank() != 1 || t->dim(0) != n))
      fail(std::string(what) + " must be [" + std::to_string(n) + "], got " + shape_str(t->shape));
  }
};

}  // namespace

Tensor call_op(Backend& be, const std::string& name, const OpArgs& args) {
  Call c{name, args};
  if (name == "add") {
    c.inputs(2, 2);
    c.same(c.in(0), c.in(1));
    return be.add(c.in(0), c.in(1));
  }
  if (name == "silu" || name == "gelu" || name == "quick_gelu") {
    c.inputs(1, 1);
    return name == "silu" ? be.silu(c.in(0)) : name == "gelu" ? be.gelu(c.in(0)) : be.quick_gelu(c.in(0));
  }
  if (name == "geglu") {
    c.inputs(1, 1);
    if (c.in(0).rank() < 1 || c.in(0).dim(-1) % 2) c.fail("the last axis must have an even size");
    return be.geglu(c.in(0));
  }
  if (name == "lincomb") {
    if (args.inputs.empty() || args.inputs.size() > 8) c.fail("takes 1-8 inputs");
    std::vector<float> k = c.floats("coefficients", args.inputs.size());
    std::vector<std::pair<double, const Tensor*>> terms;
    for (size_t i = 0; i < k.size(); i++) {
      c.same(*args.inputs[i], *args.inputs[0]);
      terms.emplace_back(k[i], args.inputs[i]);
    }
    return be.lincomb(terms);
  }
  if (name == "channel_affine") {
    c.inputs(1, 1);
    c.rank(c.in(0), 4, "x");
    size_t C = size_t(c.in(0).dim(1));
    return be.channel_affine(c.in(0), c.floats("scale", C), c.floats("shift", C));
  }
  if (name == "linear") {
    c.inputs(2, 4);
    const Tensor &x = c.in(0), &w = c.in(1);
    if (x.rank() < 2 || x.numel() == 0) c.fail("x must be [..., K]");
    c.rank(w, 2, "w");
    if (w.dim(1) != x.dim(-1)) c.fail("w " + shape_str(w.shape) + " does not take x " + shape_str(x.shape));
    c.vec(c.opt(2), w.dim(0), "bias");
    Shape out = x.shape;
    out.back() = w.dim(0);
    if (c.opt(3) && c.opt(3)->shape != out) c.fail("residual " + shape_str(c.opt(3)->shape) + " is not the output's " + shape_str(out));
    return be.linear(x, w, c.opt(2), c.opt(3));
  }
  if (name == "linears") {  // the weights packed as a model packs them, then x times each: joined on the last axis
    if (args.inputs.size() < 2 || args.inputs.size() > 9) c.fail("takes 2-9 inputs");
    const Tensor& x = c.in(0);
    if (x.rank() < 2 || x.numel() == 0) c.fail("x must be [..., K]");
    std::vector<Tensor> ws;
    for (size_t i = 1; i < args.inputs.size(); i++) {
      if (!args.inputs[i]) c.fail("input " + std::to_string(i) + " is missing");
      c.rank(c.in(i), 2, "w");
      if (c.in(i).shape != c.in(1).shape || c.in(i).dim(1) != x.dim(-1))
        c.fail("the weights must share one shape [N, " + std::to_string(x.dim(-1)) + "]");
      ws.push_back(c.in(i));
    }
    std::vector<Tensor> ys = be.linears(x, be.pack_weights(ws));
    Tensor y = ys[0];
    for (size_t i = 1; i < ys.size(); i++) y = be.concat(y, ys[i], -1);
    return y;
  }
  if (name == "conv2d") {
    c.inputs(2, 4);
    const Tensor &x = c.in(0), &w = c.in(1);
    c.rank(x, 4, "x");
    c.rank(w, 4, "w");
    int stride = int(c.integer("stride", 1, 8)), pad = int(c.integer("pad", 0, 8));
    if (w.dim(1) != x.dim(1)) c.fail("w " + shape_str(w.shape) + " does not take x " + shape_str(x.shape));
    if (x.dim(2) + 2 * pad < w.dim(2) || x.dim(3) + 2 * pad < w.dim(3)) c.fail("the kernel is larger than the padded input");
    c.vec(c.opt(2), w.dim(0), "bias");
    Shape out{x.dim(0), w.dim(0), (x.dim(2) + 2 * pad - w.dim(2)) / stride + 1, (x.dim(3) + 2 * pad - w.dim(3)) / stride + 1};
    if (c.opt(3) && c.opt(3)->shape != out) c.fail("residual " + shape_str(c.opt(3)->shape) + " is not the output's " + shape_str(out));
    if (c.opt(3) && c.opt(3)->layout != x.layout) c.fail("the residual is not in x's layout");
    return be.conv2d(x, w, c.opt(2), stride, pad, c.opt(3));
  }
  if (name == "upsample2x_conv2d") {
    c.inputs(2, 3);
    const Tensor &x = c.in(0), &w = c.in(1);
    c.rank(x, 4, "x");
    c.rank(w, 4, "w");
    int pad = int(c.integer("pad", 0, 8));
    if (w.dim(1) != x.dim(1)) c.fail("w " + shape_str(w.shape) + " does not take x " + shape_str(x.shape));
    if (2 * x.dim(2) + 2 * pad < w.dim(2) || 2 * x.dim(3) + 2 * pad < w.dim(3)) c.fail("the kernel is larger than the padded input");
    c.vec(c.opt(2), w.dim(0), "bias");
    return be.upsample2x_conv2d(x, w, c.opt(2), pad);
  }
  if (name == "cast") {  // to bf16 storage (wide: 1) or back (wide: 0) on the GPU; the CPU keeps float32
    c.inputs(1, 1);
    return be.cast(c.in(0), c.integer("wide", 0, 1) ? Storage::Wide : Storage::Default);
  }
  if (name == "group_norm") {  // a fourth input [B, C] is added to x's channels first
    c.inputs(3, 4);
    const Tensor& x = c.in(0);
    c.rank(x, 4, "x");
    int64_t groups = c.integer("groups", 1, x.dim(1));
    if (x.dim(1) % groups) c.fail("groups must divide the channels");
    c.vec(&c.in(1), x.dim(1), "gamma");
    c.vec(&c.in(2), x.dim(1), "beta");
    if (c.opt(3) && c.opt(3)->shape != Shape{x.dim(0), x.dim(1)}) c.fail("add must be [B, C], got " + shape_str(c.opt(3)->shape));
    return be.group_norm(x, c.in(1), c.in(2), int(groups), float(c.num("eps")), c.num("silu") != 0, c.opt(3));
  }
  if (name == "layer_norm") {
    c.inputs(3, 3);
    const Tensor& x = c.in(0);
    if (x.rank() < 1 || x.numel() == 0) c.fail("x is empty");
    c.vec(&c.in(1), x.dim(-1), "gamma");
    c.vec(&c.in(2), x.dim(-1), "beta");
    return be.layer_norm(x, c.in(1), c.in(2), float(c.num("eps")));
  }
  if (name == "attention") {
    c.inputs(3, 3);
    const Tensor &q = c.in(0), &k = c.in(1), &v = c.in(2);
    c.rank(q, 3, "q");
    c.rank(k, 3, "k");
    c.same(k, v);
    int64_t heads = c.integer("heads", 1, q.dim(2));
    if (k.dim(0) != q.dim(0) || k.dim(2) != q.dim(2) || q.dim(2) % heads)
      c.fail("q " + shape_str(q.shape) + " and k " + shape_str(k.shape) + " do not match with " + std::to_string(heads) + " heads");
    return be.attention(q, k, v, int(heads), c.num("causal") != 0);
  }
  if (name == "pad2d") {
    c.inputs(1, 1);
    c.rank(c.in(0), 4, "x");
    return be.pad2d(c.in(0), int(c.integer("left", 0, 64)), int(c.integer("right", 0, 64)), int(c.integer("top", 0, 64)),
                    int(c.integer("bottom", 0, 64)));
  }
  if (name == "upsample_nearest") {
    c.inputs(1, 1);
    c.rank(c.in(0), 4, "x");
    return be.upsample_nearest(c.in(0), c.integer("oh", 1, 1 << 16), c.integer("ow", 1, 1 << 16));
  }
  if (name == "concat") {
    c.inputs(2, 2);
    if (c.in(0).layout != c.in(1).layout) c.fail("the inputs are in different layouts (NCHW and NHWC)");
    return be.concat(c.in(0), c.in(1), int(c.integer("axis", -8, 7)));
  }
  if (name == "slice0") {
    c.inputs(1, 1);
    if (c.in(0).rank() < 1) c.fail("x has no batch axis");
    int64_t start = c.integer("start", 0, c.in(0).dim(0)), count = c.integer("count", 1, c.in(0).dim(0) - start);
    return be.slice0(c.in(0), start, count);
  }
  if (name == "image_to_tokens") {
    c.inputs(1, 1);
    c.rank(c.in(0), 4, "x");
    return be.image_to_tokens(c.in(0));
  }
  if (name == "tokens_to_image") {
    c.inputs(1, 1);
    c.rank(c.in(0), 3, "x");
    int64_t h = c.integer("h", 1, 1 << 16), w = c.integer("w", 1, 1 << 16);
    if (h * w != c.in(0).dim(1)) c.fail("h * w must equal the sequence length");
    return be.tokens_to_image(c.in(0), h, w);
  }
  if (name == "repeat_batch") {  // times over, in NHWC (nhwc: 1) or NCHW
    c.inputs(1, 1);
    if (c.in(0).rank() < 1) c.fail("x has no batch axis");
    return be.repeat_batch(c.in(0), c.integer("times", 1, 64), c.integer("nhwc", 0, 1) ? Layout::NHWC : Layout::NCHW);
  }
  if (name == "to_layout") {  // nhwc: 1 for channels last (the GPU's image layout), 0 for NCHW
    c.inputs(1, 1);
    return be.to_layout(c.in(0), c.integer("nhwc", 0, 1) ? Layout::NHWC : Layout::NCHW);
  }
  if (name == "embedding") {
    c.inputs(1, 1);
    c.rank(c.in(0), 2, "table");
    auto it = args.list.find("ids");
    if (it == args.list.end() || it->second.empty()) c.fail("needs \"ids\"");
    int64_t batch = c.integer("batch", 1, int64_t(it->second.size()));
    if (int64_t(it->second.size()) % batch) c.fail("the ids do not split into the batch");
    std::vector<int32_t> ids;
    for (double d : it->second) {
      if (d != std::floor(d) || d < 0 || d >= double(c.in(0).dim(0))) c.fail("token id " + std::to_string(d) + " is outside the table");
      ids.push_back(int32_t(d));
    }
    return be.embedding(ids, batch, c.in(0));
  }
  if (name == "gather_rows") {
    c.inputs(1, 1);
    c.rank(c.in(0), 3, "x");
    std::vector<int64_t> rows;
    for (float r : c.floats("rows", size_t(c.in(0).dim(0)))) {
      if (r != std::floor(r) || r < 0 || r >= float(c.in(0).dim(1))) c.fail("row " + std::to_string(r) + " is outside the sequence");
      rows.push_back(int64_t(r));
    }
    return be.gather_rows(c.in(0), rows);
  }
  throw Error(Code::InvalidArgument, "unknown op \"" + name + "\"");
}

}  // namespace pg25
