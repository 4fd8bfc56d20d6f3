#include "profiling.h"

#include <map>
#include <mutex>
#include <type_traits>

namespace pg25 {
namespace {

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(std::shared_ptr<Backend> inner) : in_(std::move(inner)) {}

  std::string name() const override { return in_->name(); }
  void bind_thread() override { in_->bind_thread(); }
  std::vector<std::string> take_notices() override { return in_->take_notices(); }
  std::unique_ptr<Mark> mark() override { return in_->mark(); }
  double elapsed_ms(const Mark& a, const Mark& b) override { return in_->elapsed_ms(a, b); }
  // Waits for the queued work, then resolves every pair of marks taken since the last call.
  std::vector<std::pair<std::string, OpTotal>> take_profile() override {
    in_->synchronize();
    std::vector<Span> spans;
    {
      std::lock_guard<std::mutex> lock(mu_);
      spans.swap(spans_);
    }
    std::map<std::string, OpTotal> totals;
    for (const Span& s : spans) {
      OpTotal& t = totals[s.op];
      t.calls++;
      t.ms += in_->elapsed_ms(*s.begin, *s.end);
    }
    return {totals.begin(), totals.end()};
  }

  Tensor from_host(const float* data, const Shape& shape) override { return in_->from_host(data, shape); }
  Tensor weight(const std::string& name, const float* data, const Shape& shape, Storage storage) override { return in_->weight(name, data, shape, storage); }
  Tensor weight_f16(const std::string& name, const uint16_t* bits, const Shape& shape, Storage storage) override {
    return in_->weight_f16(name, bits, shape, storage);
  }
  bool takes_f16(Storage storage) const override { return in_->takes_f16(storage); }
  Tensor cast(const Tensor& x, Storage storage) override { return timed("cast", [&] { return in_->cast(x, storage); }); }
  void copy_into(const Tensor& dst, const Tensor& src) override { in_->copy_into(dst, src); }
  Layout image_layout() const override { return in_->image_layout(); }
  Tensor to_layout(const Tensor& x, Layout layout) override { return timed("to_layout", [&] { return in_->to_layout(x, layout); }); }
  Tensor repeat_batch(const Tensor& x, int64_t times, Layout layout) override {
    return timed("repeat_batch", [&] { return in_->repeat_batch(x, times, layout); });
  }
  void synchronize() override { in_->synchronize(); }
  void to_host(const Tensor& t, float* out) override { in_->to_host(t, out); }
  size_t bytes_in_use() const override { return in_->bytes_in_use(); }
  bool device_memory(size_t& free, size_t& total) override { return in_->device_memory(free, total); }
  size_t peak_bytes() const override { return in_->peak_bytes(); }
  void reset_peak() override { in_->reset_peak(); }

  Tensor lincomb(const std::vector<std::pair<double, const Tensor*>>& terms) override { return timed("lincomb", [&] { return in_->lincomb(terms); }); }
  Tensor add(const Tensor& a, const Tensor& b) override { return timed("add", [&] { return in_->add(a, b); }); }
  Tensor silu(const Tensor& x) override { return timed("silu", [&] { return in_->silu(x); }); }
  Tensor gelu(const Tensor& x) override { return timed("gelu", [&] { return in_->gelu(x); }); }
  Tensor quick_gelu(const Tensor& x) override { return timed("quick_gelu", [&] { return in_->quick_gelu(x); }); }
  Tensor geglu(const Tensor& x) override { return timed("geglu", [&] { return in_->geglu(x); }); }
  Tensor channel_affine(const Tensor& x, const std::vector<float>& scale, const std::vector<float>& shift) override {
    return timed("channel_affine", [&] { return in_->channel_affine(x, scale, shift); });
  }
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual) override {
    return timed("linear", [&] { return in_->linear(x, w, bias, residual); });
  }
  std::vector<Tensor> pack_weights(const std::vector<Tensor>& ws) override { return in_->pack_weights(ws); }
  std::vector<Tensor> linears(const Tensor& x, const std::vector<Tensor>& ws) override { return timed("linears", [&] { return in_->linears(x, ws); }); }
  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad, const Tensor* residual) override {
    return timed("conv2d", [&] { return in_->conv2d(x, w, bias, stride, pad, residual); });
  }
  Tensor group_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps, bool silu, const Tensor* add) override {
    return timed("group_norm", [&] { return in_->group_norm(x, gamma, beta, groups, eps, silu, add); });
  }
  Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) override {
    return timed("layer_norm", [&] { return in_->layer_norm(x, gamma, beta, eps); });
  }
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, bool causal) override {
    return timed("attention", [&] { return in_->attention(q, k, v, heads, causal); });
  }
  Tensor pad2d(const Tensor& x, int left, int right, int top, int bottom) override { return timed("pad2d", [&] { return in_->pad2d(x, left, right, top, bottom); }); }
  Tensor upsample_nearest(const Tensor& x, int64_t oh, int64_t ow) override { return timed("upsample_nearest", [&] { return in_->upsample_nearest(x, oh, ow); }); }
  Tensor concat(const Tensor& a, const Tensor& b, int axis) override { return timed("concat", [&] { return in_->concat(a, b, axis); }); }
  Tensor slice0(const Tensor& x, int64_t start, int64_t count) override { return timed("slice0", [&] { return in_->slice0(x, start, count); }); }
  Tensor image_to_tokens(const Tensor& x) override { return timed("image_to_tokens", [&] { return in_->image_to_tokens(x); }); }
  Tensor tokens_to_image(const Tensor& x, int64_t h, int64_t w) override { return timed("tokens_to_image", [&] { return in_->tokens_to_image(x, h, w); }); }
  Tensor embedding(const std::vector<int32_t>& ids, int64_t batch, const Tensor& table) override {
    return timed("embedding", [&] { return in_->embedding(ids, batch, table); });
  }
  Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& rows) override { return timed("gather_rows", [&] { return in_->gather_rows(x, rows); }); }
  std::vector<uint8_t> latent_rgb(const Tensor& x, const std::vector<float>& m, const std::vector<float>& bias) override {
    return in_->latent_rgb(x, m, bias);
  }
  std::vector<uint8_t> to_rgb8(const Tensor& x) override { return in_->to_rgb8(x); }

 private:
  struct Span {
    const char* op;
    std::unique_ptr<Mark> begin, end;
  };
  template <class F>
  std::invoke_result_t<F> timed(const char* op, F&& f) {
    Span s{op, in_->mark(), nullptr};
    auto y = f();
    s.end = in_->mark();
    std::lock_guard<std::mutex> lock(mu_);
    spans_.push_back(std::move(s));
    return y;
  }

  std::shared_ptr<Backend> in_;
  std::mutex mu_;  // jobs on several threads add spans at once
  std::vector<Span> spans_;
};

}  // namespace

std::unique_ptr<Backend> make_profiling_backend(std::shared_ptr<Backend> inner) { return std::make_unique<ProfilingBackend>(std::move(inner)); }

}  // namespace pg25
