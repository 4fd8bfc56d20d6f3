#include "lora.h"

#include <atomic>

#include "../core/error.h"

namespace pg25 {
namespace {

std::atomic<uint64_t> epoch{0};

// Counts a merge as done however it ends: a merge that fails part way has changed weights too.
struct EpochBump {
  ~EpochBump() { epoch.fetch_add(1); }
};

}  // namespace

uint64_t lora_epoch() { return epoch.load(); }

void apply_lora(Backend& be, const Params& params, const WeightStore& originals, const std::vector<LoraUpdate>& updates) {
  std::vector<const Params::Held*> targets;
  for (const LoraUpdate& u : updates) {
    auto fail = [&](const std::string& why) { return Error(Code::InvalidArgument, "LoRA update of \"" + u.name + "\": " + why); };
    const Params::Held* h = params.held(u.name);
    if (!h) throw fail("the component has no such weight");
    const Tensor& w = h->tensor;
    if (w.rank() < 2) throw fail("weight " + shape_str(w.shape) + " is not a matrix or a convolution kernel");
    int64_t out = w.dim(0), k = w.numel() / out;
    if (u.rank < 0 || u.rank > (int64_t(1) << 20)) throw fail("rank " + std::to_string(u.rank) + " is out of range");
    if (int64_t(u.up.size) != out * u.rank || int64_t(u.down.size) != u.rank * k)
      throw fail("up and down must hold " + std::to_string(out) + "x" + std::to_string(u.rank) + " and " + std::to_string(u.rank) + "x" +
                 std::to_string(k) + " values for weight " + shape_str(w.shape) + ", got " + std::to_string(u.up.size) + " and " +
                 std::to_string(u.down.size));
    targets.push_back(h);
  }
  EpochBump bump;
  for (size_t i = 0; i < updates.size(); i++) {
    const LoraUpdate& u = updates[i];
    const Params::Held& h = *targets[i];
    const Tensor& w = h.tensor;
    Tensor orig = load_weight(be, originals, u.name, w.shape, h.linear, h.storage);
    if (u.rank == 0) {
      be.copy_into(w, be.to_layout(orig, w.layout));
      continue;
    }
    int64_t out = w.dim(0), k = w.numel() / out, r = u.rank;
    // linear(x, w) is x w^T: with x = up [out, r] and w = down^T [k, r] it is up · down [out, k], and
    // the original weight, viewed as [out, k], is added as the GEMM's residual (no extra pass).
    std::vector<float> down_t(size_t(k * r));
    for (int64_t a = 0; a < r; a++)
      for (int64_t b = 0; b < k; b++) down_t[size_t(b * r + a)] = u.down.data[size_t(a * k + b)];
    Tensor up_t = be.cast(be.from_host(u.up.data, {out, r}), h.storage);
    Tensor down_tt = be.cast(be.from_host(down_t.data(), {k, r}), h.storage);
    Tensor base{orig.buf, {out, k}};
    Tensor merged = be.linear(up_t, down_tt, nullptr, &base);
    be.copy_into(w, be.to_layout(Tensor{merged.buf, w.shape}, w.layout));
  }
}

}  // namespace pg25
