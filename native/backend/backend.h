// The ops interface: one model graph (native/models) is written against it; the CPU backend
// (native/cpu) and the CUDA backend (native/cuda) implement it. Shapes read [N, C, H, W] for images and
// [batch, tokens, channels] for sequences; weights keep PyTorch's shapes. Each backend keeps images in
// the layout it says (image_layout(): NCHW on the CPU, the reference; NHWC on the GPU): models convert
// their image input to it once and their output back to NCHW, and image ops keep their input's layout.
#pragma once
#include <cstdint>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor.h"

namespace pg25 {

// How a component's tensors are stored where a backend has the choice: Default (fp16 on the GPU), or
// Wide, float32's exponent range (bf16 on the GPU), for networks whose activations overflow fp16
// (VAEs that set force_upcast). The CPU stores float32 either way.
enum class Storage { Default, Wide };

// What a backend keeps to replay recorded work (CUDA graphs): made by make_recorder, owned by the
// model whose work it records, so it goes when the model does.
class Recorder {
 public:
  virtual ~Recorder() = default;
};

// A point in a backend's queued work, for timing it (mark / elapsed_ms).
class Mark {
 public:
  virtual ~Mark() = default;
};

// One op's totals in a profile (take_profile; native/backend/profiling.cc).
struct OpTotal {
  int64_t calls = 0;
  double ms = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Makes the calling thread issue work to this backend's device (CUDA keeps the current device per
  // thread, and a backend's calls arrive on the main thread and on libuv's). Called before every use.
  virtual void bind_thread() {}
  // One-line notices for the user that arose while the backend started (a missing optional library),
  // each handed out once.
  virtual std::vector<std::string> take_notices() { return {}; }
  // Timing: a mark at this point of the queued work, and the milliseconds between two marks once both
  // have passed (waiting for them). By default the host clock, right where ops complete as they return.
  virtual std::unique_ptr<Mark> mark() { return std::make_unique<HostMark>(); }
  virtual double elapsed_ms(const Mark& a, const Mark& b) {
    return std::chrono::duration<double, std::milli>(static_cast<const HostMark&>(b).t - static_cast<const HostMark&>(a).t).count();
  }
  // Time per op since the last call (empty unless the engine was opened with PG25_PROFILE=1).
  std::vector<std::pair<std::string, OpTotal>> take_profile();
  // Every op from now on is timed on the device (marks around it) and recording is off, so each op's
  // kernels run where they can be timed (PG25_PROFILE=1 when an engine opens).
  void enable_profiling();

  // Memory. Weights arrive as float32 host data; a backend may store them in another precision
  // (and refuses, naming the tensor, values that precision cannot hold).
  virtual Tensor from_host(const float* data, const Shape& shape) = 0;
  virtual Tensor weight(const std::string& name, const float* data, const Shape& shape, Storage storage) = 0;
  // A weight given as float16 bits (straight from the file): a backend that stores fp16 takes them
  // as they are, with no float32 copy; others return an undefined tensor and get weight() instead.
  virtual Tensor weight_f16(const std::string& name, const uint16_t* bits, const Shape& shape, Storage storage) { return {}; }
  // Whether weight_f16 takes weights of `storage` (so the loader reads float16 bits only for a backend that uses them).
  virtual bool takes_f16(Storage storage) const { return false; }
  // How the CPU backend stores the GEMM and convolution weights loaded from now on: "fp32" (exact),
  // "bf16" or "fp16" (half the memory; computed in float32, or bf16 products where the CPU has them).
  // Other backends keep their own precision and ignore it.
  virtual void set_weight_precision(const std::string& precision) {}
  // x stored as `storage` (x itself when it already is). Ops keep their inputs' storage.
  Tensor cast(const Tensor& x, Storage storage) {
    OpScope scope(*this, "cast");
    return cast_impl(x, storage);
  }
  // Overwrites dst's values with src's (same element count and storage), in place: every holder of
  // dst's buffer (a model's weight, a captured CUDA graph) sees the new values. LoRA merging uses it.
  virtual void copy_into(const Tensor& dst, const Tensor& src) = 0;
  // Runs body(inputs), whose result has shape `out_shape`. A backend that records work (CUDA graphs)
  // records body's ops once per input shapes into `rec` and replays them for later calls, with the
  // inputs copied into the recording's own buffers: so body must depend on nothing but the inputs'
  // values and the model's weights (no host data, no host reads), and must not keep any tensor it
  // makes. Without a recorder (or on a backend that cannot record), body simply runs.
  std::unique_ptr<Recorder> make_recorder() { return profiling_ ? nullptr : make_recorder_impl(); }
  virtual Tensor run_recorded(Recorder* rec, const std::vector<Tensor>& inputs, const Shape& out_shape,
                              const std::function<Tensor(const std::vector<Tensor>&)>& body) {
    return body(inputs);
  }
  // The layout image activations and convolution weights are kept in on this backend.
  virtual Layout image_layout() const { return Layout::NCHW; }
  // x laid out as `layout` (x itself when it already is, or when it is not rank 4).
  Tensor to_layout(const Tensor& x, Layout layout) {
    OpScope scope(*this, "to_layout");
    return to_layout_impl(x, layout);
  }
  // x's batch `times` over ([x; x] for classifier-free guidance's two halves), laid out as `layout`:
  // where that changes the layout, the one pass that converts it writes every copy.
  Tensor repeat_batch(const Tensor& x, int64_t times, Layout layout) {
    OpScope scope(*this, "repeat_batch");
    return repeat_batch_impl(x, times, layout);
  }
  // Returns when the work queued so far has completed (a no-op where ops complete as they return).
  virtual void synchronize() {}
  // t's values in its shape's row-major order (NCHW whatever its layout).
  virtual void to_host(const Tensor& t, float* out) = 0;
  // Moves these weights out of memory into a scratch file (page_in reads them back, bit for bit): a
  // component idle while another runs, where memory is short. False where weights stay put (CUDA).
  virtual bool page_out(const std::vector<Tensor>& weights) { return false; }
  virtual void page_in(const std::vector<Tensor>& weights) {}
  virtual size_t bytes_in_use() const = 0;
  // The device's free and total bytes, where the backend has a device of its own (false: host memory).
  virtual bool device_memory(size_t& free, size_t& total) { return false; }
  // The most bytes held at once since the last reset (weights included).
  virtual size_t peak_bytes() const = 0;
  virtual void reset_peak() = 0;

  // Elementwise. lincomb is the scheduler's one op: sum_i c_i * t_i over tensors of one shape.
  Tensor lincomb(const std::vector<std::pair<double, const Tensor*>>& terms) {
    OpScope scope(*this, "lincomb");
    return lincomb_impl(terms);
  }
  Tensor add(const Tensor& a, const Tensor& b) {
    OpScope scope(*this, "add");
    return add_impl(a, b);
  }
  Tensor silu(const Tensor& x) {
    OpScope scope(*this, "silu");
    return silu_impl(x);
  }
  Tensor gelu(const Tensor& x) {
    OpScope scope(*this, "gelu");
    return gelu_impl(x);
  }  // exact (erf) GELU
  Tensor quick_gelu(const Tensor& x) {
    OpScope scope(*this, "quick_gelu");
    return quick_gelu_impl(x);
  }  // x * sigmoid(1.702 x)
  Tensor geglu(const Tensor& x) {
    OpScope scope(*this, "geglu");
    return geglu_impl(x);
  }  // last axis [a | g] -> a * gelu(g)
  // x [B, C, H, W] * scale[c] + shift[c]
  Tensor channel_affine(const Tensor& x, const std::vector<float>& scale, const std::vector<float>& shift) {
    OpScope scope(*this, "channel_affine");
    return channel_affine_impl(x, scale, shift);
  }

  // Layers.
  // x [..., K], w [N, K] -> x w^T + bias (+ residual, of the output's shape: the skip connection, folded
  // into the GEMM where a backend can)
  Tensor linear(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual = nullptr) {
    OpScope scope(*this, "linear");
    return linear_impl(x, w, bias, residual);
  }
  // Weights of one shape that multiply one input together (self-attention's query, key and value
  // projections), in order: a backend may store them back to back in one buffer, so that linears()
  // runs them as one batched GEMM (three times the tiles of one projection to spread over the GPU).
  // Returns the tensors to use from now on (by default, those given).
  virtual std::vector<Tensor> pack_weights(const std::vector<Tensor>& ws) { return ws; }
  // x [..., K] times each weight [N, K]^T (no bias), in order.
  std::vector<Tensor> linears(const Tensor& x, const std::vector<Tensor>& ws) {
    OpScope scope(*this, "linears");
    return linears_impl(x, ws);
  }
  // (+ residual, of the output's shape: a ResNet block's skip connection, added in the bias pass)
  Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad, const Tensor* residual = nullptr) {
    OpScope scope(*this, "conv2d");
    return conv2d_impl(x, w, bias, stride, pad, residual);
  }
  // x nearest-upsampled 2x, then a 3x3 convolution (stride 1): a decoder's Upsample2D, where a backend
  // can read x through the convolution instead of making the upsampled copy (4x x's bytes).
  Tensor upsample2x_conv2d(const Tensor& x, const Tensor& w, const Tensor* bias, int pad) {
    OpScope scope(*this, "upsample2x_conv2d");
    return upsample2x_conv2d_impl(x, w, bias, pad);
  }
  // (+ SiLU); `add` [B, C] (when given) is added to x's channels first, in the same passes: a ResNet
  // block's time embedding. x by value: a caller that moves in the last reference to its buffer lets a
  // backend normalise in place.
  Tensor group_norm(Tensor x, const Tensor& gamma, const Tensor& beta, int groups, float eps, bool silu, const Tensor* add = nullptr) {
    OpScope scope(*this, "group_norm");
    return group_norm_impl(x, gamma, beta, groups, eps, silu, add);
  }
  Tensor layer_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
    OpScope scope(*this, "layer_norm");
    return layer_norm_impl(x, gamma, beta, eps);
  }
  // q [B, Nq, C], k and v [B, Nk, C]; `heads` split C; scaled by 1/sqrt(C/heads).
  Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, bool causal) {
    OpScope scope(*this, "attention");
    return attention_impl(q, k, v, heads, causal);
  }
  // Nearest-neighbour resize to [oh, ow] (torch's 'nearest': src = floor(dst * in / out)).
  // Zero padding of the spatial axes of x [B, C, H, W].
  Tensor pad2d(const Tensor& x, int left, int right, int top, int bottom) {
    OpScope scope(*this, "pad2d");
    return pad2d_impl(x, left, right, top, bottom);
  }
  Tensor upsample_nearest(const Tensor& x, int64_t oh, int64_t ow) {
    OpScope scope(*this, "upsample_nearest");
    return upsample_nearest_impl(x, oh, ow);
  }

  // Shape movement.
  Tensor concat(const Tensor& a, const Tensor& b, int axis) {
    OpScope scope(*this, "concat");
    return concat_impl(a, b, axis);
  }
  // Along the batch axis; a backend may return a view of x's memory (ops never write into their inputs).
  Tensor slice0(const Tensor& x, int64_t start, int64_t count) {
    OpScope scope(*this, "slice0");
    return slice0_impl(x, start, count);
  }
  // Image [B, C, H, W] -> tokens [B, HW, C], and back to an image in the backend's image layout (for
  // NHWC images both are views of the same buffer: no copy).
  Tensor image_to_tokens(const Tensor& x) {
    OpScope scope(*this, "image_to_tokens");
    return image_to_tokens_impl(x);
  }
  Tensor tokens_to_image(const Tensor& x, int64_t h, int64_t w) {
    OpScope scope(*this, "tokens_to_image");
    return tokens_to_image_impl(x, h, w);
  }
  // ids [B*L] -> table rows [B, L, C]
  Tensor embedding(const std::vector<int32_t>& ids, int64_t batch, const Tensor& table) {
    OpScope scope(*this, "embedding");
    return embedding_impl(ids, batch, table);
  }
  // x [B, L, C] -> [B, C], row rows[b] of each batch entry
  Tensor gather_rows(const Tensor& x, const std::vector<int64_t>& rows) {
    OpScope scope(*this, "gather_rows");
    return gather_rows_impl(x, rows);
  }

  // Preview: x [B, C, H, W] -> RGB bytes [B, H, W, 3] by a per-pixel linear map, rgb = M x + bias
  // (M row-major 3 x C), mapped from [-1, 1] to [0, 255]. A few flops per pixel; no decoder.
  virtual std::vector<uint8_t> latent_rgb(const Tensor& x, const std::vector<float>& m, const std::vector<float>& bias) = 0;

  // Image out: x [B, 3, H, W] in [-1, 1] -> RGB bytes, round(clamp(x/2+0.5, 0, 1) * 255), NHWC.
  virtual std::vector<uint8_t> to_rgb8(const Tensor& x) = 0;

 protected:
  struct HostMark : Mark {
    std::chrono::steady_clock::time_point t = std::chrono::steady_clock::now();
  };

  // What each backend implements: the ops above, behind one dispatch point (the public calls), where
  // profiling marks them; an op that calls another op is timed as the outer one only.
  virtual std::unique_ptr<Recorder> make_recorder_impl() { return nullptr; }
  virtual Tensor cast_impl(const Tensor& x, Storage storage) = 0;
  virtual Tensor to_layout_impl(const Tensor& x, Layout layout) = 0;
  virtual Tensor repeat_batch_impl(const Tensor& x, int64_t times, Layout layout) = 0;
  virtual Tensor lincomb_impl(const std::vector<std::pair<double, const Tensor*>>& terms) = 0;
  virtual Tensor add_impl(const Tensor& a, const Tensor& b) = 0;
  virtual Tensor silu_impl(const Tensor& x) = 0;
  virtual Tensor gelu_impl(const Tensor& x) = 0;
  virtual Tensor quick_gelu_impl(const Tensor& x) = 0;
  virtual Tensor geglu_impl(const Tensor& x) = 0;
  virtual Tensor channel_affine_impl(const Tensor& x, const std::vector<float>& scale, const std::vector<float>& shift) = 0;
  virtual Tensor linear_impl(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual) = 0;
  virtual std::vector<Tensor> linears_impl(const Tensor& x, const std::vector<Tensor>& ws) {
    std::vector<Tensor> out;
    for (const Tensor& w : ws) out.push_back(linear(x, w, nullptr));
    return out;
  }
  virtual Tensor conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad, const Tensor* residual) = 0;
  virtual Tensor upsample2x_conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* bias, int pad) {
    return conv2d_impl(upsample_nearest_impl(x, x.dim(2) * 2, x.dim(3) * 2), w, bias, 1, pad, nullptr);
  }
  virtual Tensor group_norm_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps, bool silu,
                                 const Tensor* add) = 0;
  virtual Tensor layer_norm_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) = 0;
  virtual Tensor attention_impl(const Tensor& q, const Tensor& k, const Tensor& v, int heads, bool causal) = 0;
  virtual Tensor pad2d_impl(const Tensor& x, int left, int right, int top, int bottom) = 0;
  virtual Tensor upsample_nearest_impl(const Tensor& x, int64_t oh, int64_t ow) = 0;
  virtual Tensor concat_impl(const Tensor& a, const Tensor& b, int axis) = 0;
  virtual Tensor slice0_impl(const Tensor& x, int64_t start, int64_t count) = 0;
  virtual Tensor image_to_tokens_impl(const Tensor& x) = 0;
  virtual Tensor tokens_to_image_impl(const Tensor& x, int64_t h, int64_t w) = 0;
  virtual Tensor embedding_impl(const std::vector<int32_t>& ids, int64_t batch, const Tensor& table) = 0;
  virtual Tensor gather_rows_impl(const Tensor& x, const std::vector<int64_t>& rows) = 0;

 private:
  struct Profile;
  // Marks an op's start and end on the backend's queued work while profiling; nested ops belong to the
  // outermost one (per thread), and an op that throws leaves no span.
  class OpScope {
   public:
    OpScope(Backend& be, const char* op);
    ~OpScope();
    OpScope(const OpScope&) = delete;
    OpScope& operator=(const OpScope&) = delete;

   private:
    Backend& be_;
    const char* op_;
    std::unique_ptr<Mark> begin_;
    int uncaught_;
  };
  std::shared_ptr<Profile> profiling_;
};

}  // namespace pg25
