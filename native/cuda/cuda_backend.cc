#include "cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "../core/error.h"
#include "../io/safetensors.h"
#include "cublaslt.h"
#include "convolution.h"
#include "cudnn.h"
#include "cuda_runtime_info.h"
#include "device_memory.h"
#include "graphs.h"
#include "kernels.h"
#include "../platform/env.h"

namespace pg25 {
namespace {

using cuda::check;
using cuda::cuda_version;
using cuda::CudaBuffer;
using cuda::Stream;

// The device this thread last selected through a backend (all our cudaSetDevice calls go through it).
thread_local int tl_current_device = -1;

// The oldest driver branch a CUDA runtime major version runs on (NVIDIA's compatibility table).
const char* driver_branch(int runtime) { return runtime >= 13000 ? "R580" : runtime >= 12000 ? "R525" : "R520"; }

void* P(const Tensor& t) { return cuda::dev_ptr(t); }
bool W(const Tensor& t) { return cuda::is_wide(t); }
bool NHWC(const Tensor& t) { return t.rank() == 4 && t.layout == Layout::NHWC; }
// Image ops keep one layout: a mix means the model forgot a conversion.
Layout one_layout(const char* op, std::initializer_list<const Tensor*> ts) {
  Layout l = (*ts.begin())->layout;
  for (const Tensor* t : ts)
    if (t && t->rank() == 4 && t->layout != l) throw Error(Code::Internal, std::string(op) + ": inputs mix NCHW and NHWC layouts");
  return l;
}

// PG25_CUDA_LAYOUT: nhwc (the default: what cuDNN's tensor-core convolutions read) or nchw.
Layout layout_from_env() {
  const char* env = platform::env("PG25_CUDA_LAYOUT");
  if (!env || !*env || std::strcmp(env, "nhwc") == 0) return Layout::NHWC;
  if (std::strcmp(env, "nchw") == 0) return Layout::NCHW;
  throw Error(Code::InvalidArgument, std::string("PG25_CUDA_LAYOUT must be \"nhwc\" or \"nchw\", got \"") + env + "\"");
}
// Ops keep one storage type: a mix means the model forgot a cast, which would misread the bytes.
bool same(const char* op, std::initializer_list<const Tensor*> ts) {
  bool w = W(**ts.begin());
  for (const Tensor* t : ts)
    if (t && W(*t) != w) throw Error(Code::Internal, std::string(op) + ": inputs mix fp16 and bf16 storage");
  return w;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device), layout_(layout_from_env()) {
    std::string why = cuda::describe_availability();
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    int driver = 0;
    if (e == cudaErrorInsufficientDriver) cudaDriverGetVersion(&driver);
    // Driver version 0 is CUDA's answer where no driver is installed at all: that is the plain case below.
    if (e == cudaErrorInsufficientDriver && driver > 0) {
      cudaGetLastError();
      throw Error(Code::NoDevice, std::string("the NVIDIA driver is too old: it supports CUDA ") + cuda_version(driver) +
                                      ", and this build's CUDA runtime " + cuda_version(CUDART_VERSION) + " needs a driver for CUDA " +
                                      cuda_version(CUDART_VERSION / 1000 * 1000) + " or newer (" + driver_branch(CUDART_VERSION) +
                                      "+); update the driver (" + cudaGetErrorString(e) + ")");
    }
    if (e != cudaSuccess || n == 0) {
      cudaGetLastError();
      // Without any driver cudart says "driver version is insufficient", which reads as if one were there.
      bool say_error = e != cudaSuccess && e != cudaErrorInsufficientDriver;
      throw Error(Code::NoDevice, "no usable NVIDIA GPU: " + why + (say_error ? std::string(" (") + cudaGetErrorString(e) + ")" : ""));
    }
    if (device < 0 || device >= n)
      throw Error(Code::NoDevice, "device \"cuda:" + std::to_string(device) + "\" does not exist: this machine has " + std::to_string(n) +
                                      " GPU" + (n == 1 ? " (cuda:0)" : "s (cuda:0 to cuda:" + std::to_string(n - 1) + ")"));
    bind_thread();
    lt_ = std::make_unique<cuda::CublasLt>();  // first: a missing library must not leave a stream behind
    open_cudnn();
    stream_owner_ = std::make_shared<Stream>(device);
    stream_ = stream_owner_->s;
    // Keep freed blocks in the stream-ordered pool: every op allocates, and the default threshold (0)
    // would hand memory back to the driver at each synchronisation.
    cudaMemPool_t pool;
    check(cudaDeviceGetDefaultMemPool(&pool, device), "memory pool");
    uint64_t keep = UINT64_MAX;
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep), "memory pool threshold");
  }
  // The stream itself goes with the last buffer that holds it.
  ~CudaBackend() override {
    bind_thread();
    cudaStreamSynchronize(stream_);
    dnn_.reset();
    lt_.reset();
  }

  // 'cuda' is GPU 0, as the API's device option names it.
  std::string name() const override { return device_ == 0 ? "cuda" : "cuda:" + std::to_string(device_); }
  void bind_thread() override {
    if (tl_current_device == device_) return;  // cudaSetDevice is cheap, but not free
    check(cudaSetDevice(device_), "selecting the GPU");
    tl_current_device = device_;
  }

  // The stream this thread's work for this engine goes to (the recording stream while recording).
  cudaStream_t stream() const { return cuda::stream_for(*stream_owner_); }

  Tensor make(const Shape& s, bool wide, Layout layout = Layout::NCHW) {
    Tensor t;
    t.shape = s;
    t.layout = s.size() == 4 ? layout : Layout::NCHW;
    auto buf = std::make_shared<CudaBuffer>(size_t(t.numel()) * 2, stream_owner_);
    buf->wide = wide;
    t.buf = std::move(buf);
    return t;
  }
  // A tensor of shape s over `of`'s memory from byte `offset` on: no memory of its own, no copy (the
  // offset keeps the pool's 256-byte alignment where the callers need it).
  static Tensor view(const Tensor& of, size_t offset, const Shape& s, Layout layout = Layout::NCHW) {
    Tensor t{nullptr, s, s.size() == 4 ? layout : Layout::NCHW};
    t.buf = std::make_shared<CudaBuffer>(std::static_pointer_cast<CudaBuffer>(of.buf), offset, size_t(t.numel()) * 2);
    return t;
  }

  // CUDA graphs, unless PG25_CUDA_GRAPHS=0 (then every call launches its kernels one by one).
  std::unique_ptr<Recorder> make_recorder_impl() override {
    const char* env = platform::env("PG25_CUDA_GRAPHS");
    if (env && std::strcmp(env, "0") == 0) return nullptr;
    return std::make_unique<cuda::GraphRecorder>(
        stream_owner_, [this](const Shape& s, bool wide) { return make(s, wide); },
        [this](const std::string& n) {
          std::lock_guard<std::mutex> g(notices_mu_);
          notices_.push_back(n);
        });
  }
  Tensor run_recorded(Recorder* rec, const std::vector<Tensor>& inputs, const Shape& out_shape,
                      const std::function<Tensor(const std::vector<Tensor>&)>& body) override {
    if (!rec) return body(inputs);
    return static_cast<cuda::GraphRecorder*>(rec)->run(inputs, out_shape, body);
  }

  Tensor from_host(const float* data, const Shape& shape) override { return upload(data, shape, false); }
  Tensor upload(const float* data, const Shape& shape, bool wide) {
    Tensor t = make(shape, wide);
    size_t n = size_t(t.numel());
    CudaBuffer staging(n * 4, stream_owner_);
    check(cudaMemcpyAsync(staging.ptr, data, n * 4, cudaMemcpyHostToDevice, stream()), "upload");
    cuda::from_f32(static_cast<float*>(staging.ptr), P(t), int64_t(n), wide, stream());
    LAUNCHED("from_f32");
    // No wait: an async copy from pageable memory returns once the source is staged (CUDA's documented
    // synchronisation behaviour), so the caller may free `data`, and the host never stalls mid-step.
    return t;
  }
  Tensor weight(const std::string& name, const float* data, const Shape& shape, Storage storage) override {
    if (storage == Storage::Wide) return upload(data, shape, true);
    // fp16 holds magnitudes up to 65504: a larger weight would silently become infinity.
    size_t n = 1;
    for (int64_t d : shape) n *= size_t(d);
    float peak = 0.f;
    for (size_t i = 0; i < n; i++) peak = std::max(peak, std::fabs(data[i]));
    if (!(peak <= 65504.f))
      throw Error(Code::Unsupported, "tensor \"" + name + "\" holds values up to " + std::to_string(peak) +
                                         ", beyond float16's 65504: it cannot be stored in fp16 on the GPU");
    return upload(data, shape, false);
  }
  bool takes_f16(Storage storage) const override { return storage == Storage::Default; }
  Tensor weight_f16(const std::string& name, const uint16_t* bits, const Shape& shape, Storage storage) override {
    if (storage != Storage::Default) return {};
    Tensor t = make(shape, false);
    size_t n = size_t(t.numel());
    for (size_t i = 0; i < n; i++)
      if ((bits[i] & 0x7c00u) == 0x7c00u)
        throw Error(Code::BadWeights, "tensor \"" + name + "\" holds an infinity or NaN (float16 bits " + std::to_string(bits[i]) +
                                          " at element " + std::to_string(i) + ")");
    // The file's bytes go up as they are: no float32 copy on the host, half the transfer (and, as in
    // upload(), no wait: the copy is staged before it returns).
    check(cudaMemcpyAsync(P(t), bits, n * 2, cudaMemcpyHostToDevice, stream()), "weight upload");
    return t;
  }
  Tensor cast_impl(const Tensor& x, Storage storage) override {
    bool wide = storage == Storage::Wide;
    if (W(x) == wide) return x;
    Tensor y = make(x.shape, wide, x.layout);
    cuda::convert(P(x), W(x), P(y), y.numel(), stream());
    LAUNCHED("convert");
    return y;
  }
  // (LoRA merging, issue 15) A device-to-device copy on the stream: the weight keeps its address.
  void copy_into(const Tensor& dst, const Tensor& src) override {
    if (dst.numel() != src.numel()) throw Error(Code::Internal, "copy_into: " + shape_str(src.shape) + " into " + shape_str(dst.shape));
    if (NHWC(dst) != NHWC(src)) throw Error(Code::Internal, "copy_into: the tensors are in different layouts");
    same("copy_into", {&dst, &src});
    if (P(dst) != P(src)) check(cudaMemcpyAsync(P(dst), P(src), size_t(dst.numel()) * 2, cudaMemcpyDeviceToDevice, stream()), "copy_into");
  }
  // Profiling marks: events on this thread's stream, timed by the GPU.
  struct EventMark : Mark {
    cudaEvent_t e = nullptr;
    ~EventMark() override {
      if (e) cudaEventDestroy(e);
    }
  };
  std::unique_ptr<Mark> mark() override {
    auto m = std::make_unique<EventMark>();
    check(cudaEventCreate(&m->e), "a profiling event");
    check(cudaEventRecord(m->e, stream()), "a profiling event");
    return m;
  }
  double elapsed_ms(const Mark& a, const Mark& b) override {
    const auto &x = static_cast<const EventMark&>(a), &y = static_cast<const EventMark&>(b);
    float ms = 0.f;
    check(cudaEventSynchronize(y.e), "a profiling event");
    check(cudaEventElapsedTime(&ms, x.e, y.e), "a profiling event");
    return ms;
  }
  void synchronize() override {
    // An event, not the whole stream: other jobs may be queueing work behind this one.
    cudaEvent_t ev;
    check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "event");
    cudaError_t e = cudaEventRecord(ev, stream());
    if (e == cudaSuccess) e = cudaEventSynchronize(ev);
    cudaEventDestroy(ev);
    check(e, "the queued GPU work");
  }
  Layout image_layout() const override { return layout_; }
  // A layout change is repeat_batch once: one kernel transposes [N, C, HW] to [N, HW, C] (NHWC) or back,
  // writing every repeat; without a layout change the repeats are copies.
  Tensor to_layout_impl(const Tensor& x, Layout layout) override { return repeat_batch(x, 1, layout); }
  Tensor repeat_batch_impl(const Tensor& x, int64_t times, Layout layout) override {
    bool transpose = x.rank() == 4 && x.layout != layout;
    if (times == 1 && !transpose) return x;
    Shape s = x.shape;
    int64_t B = x.dim(0), per = x.numel() / B;
    s[0] = B * times;
    Tensor y = make(s, W(x), layout);
    if (transpose) {
      int64_t C = x.dim(1), HW = x.dim(2) * x.dim(3);
      if (layout == Layout::NHWC) cuda::transpose_last2(P(x), P(y), B * times, B, C, HW, stream());
      else cuda::transpose_last2(P(x), P(y), B * times, B, HW, C, stream());
      LAUNCHED("repeat_batch");
      return y;
    }
    for (int64_t k = 0; k < times; k++)
      check(cudaMemcpyAsync(static_cast<char*>(P(y)) + k * B * per * 2, P(x), size_t(B * per) * 2, cudaMemcpyDeviceToDevice, stream()),
            "repeat_batch");
    return y;
  }
  void to_host(const Tensor& t_in, float* out) override {
    Tensor t = to_layout(t_in, Layout::NCHW);
    size_t n = size_t(t.numel());
    CudaBuffer staging(n * 4, stream_owner_);
    cuda::to_f32(P(t), static_cast<float*>(staging.ptr), int64_t(n), W(t), stream());
    LAUNCHED("to_f32");
    check(cudaMemcpyAsync(out, staging.ptr, n * 4, cudaMemcpyDeviceToHost, stream()), "download");
    check(cudaStreamSynchronize(stream()), "download");
  }
  size_t bytes_in_use() const override { return cuda::device_bytes(device_).bytes(); }
  bool device_memory(size_t& free, size_t& total) override {
    // Blocks our pool keeps count as free: this engine can reuse them.
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return true;
  }
  size_t peak_bytes() const override { return cuda::device_bytes(device_).peak(); }
  void reset_peak() override { cuda::device_bytes(device_).reset_peak(); }

  Tensor lincomb_impl(const std::vector<std::pair<double, const Tensor*>>& terms) override {
    bool wide = W(*terms[0].second);
    Tensor y = make(terms[0].second->shape, wide, terms[0].second->layout);
    // Chains of eight terms at a time (the schedulers use at most three).
    std::vector<const void*> xs;
    std::vector<float> cs;
    for (auto& t : terms) {
      same("lincomb", {terms[0].second, t.second});
      one_layout("lincomb", {terms[0].second, t.second});
      xs.push_back(P(*t.second));
      cs.push_back(float(t.first));
    }
    if (xs.size() > 8) throw Error(Code::InvalidArgument, "lincomb supports at most 8 terms on the GPU");
    cuda::lincomb(int(xs.size()), xs.data(), cs.data(), P(y), y.numel(), wide, stream());
    LAUNCHED("lincomb");
    return y;
  }
  Tensor add_impl(const Tensor& a, const Tensor& b) override {
    bool wide = same("add", {&a, &b});
    Tensor y = make(a.shape, wide, one_layout("add", {&a, &b}));
    cuda::add(P(a), P(b), P(y), y.numel(), wide, stream());
    LAUNCHED("add");
    return y;
  }
  Tensor unary(cuda::Unary op, const Tensor& x) {
    Tensor y = make(x.shape, W(x), x.layout);
    cuda::unary(op, P(x), P(y), y.numel(), W(x), stream());
    LAUNCHED("unary");
    return y;
  }
  Tensor silu_impl(const Tensor& x) override { return unary(cuda::Unary::Silu, x); }
  Tensor gelu_impl(const Tensor& x) override { return unary(cuda::Unary::Gelu, x); }
  Tensor quick_gelu_impl(const Tensor& x) override { return unary(cuda::Unary::QuickGelu, x); }
  Tensor geglu_impl(const Tensor& x) override {
    Shape s = x.shape;
    int64_t n = s.back() / 2;
    s.back() = n;
    Tensor y = make(s, W(x));
    cuda::geglu(P(x), P(y), x.numel() / (2 * n), n, W(x), stream());
    LAUNCHED("geglu");
    return y;
  }
  Tensor channel_affine_impl(const Tensor& x, const std::vector<float>& scale, const std::vector<float>& shift) override {
    int64_t B = x.dim(0), C = x.dim(1), HW = x.numel() / (B * C);
    CudaBuffer params(size_t(2 * C) * 4, stream_owner_);
    std::vector<float> host(scale);
    host.insert(host.end(), shift.begin(), shift.end());
    check(cudaMemcpyAsync(params.ptr, host.data(), host.size() * 4, cudaMemcpyHostToDevice, stream()), "affine parameters");
    Tensor y = make(x.shape, W(x), x.layout);
    cuda::channel_affine(P(x), static_cast<float*>(params.ptr), static_cast<float*>(params.ptr) + C, P(y), B, C, HW, NHWC(x), W(x),
                         stream());
    LAUNCHED("channel_affine");
    return y;
  }

  Tensor linear_impl(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual) override {
    int64_t K = x.dim(-1), N = w.dim(0), M = x.numel() / K;
    Shape s = x.shape;
    s.back() = N;
    bool wide = same("linear", {&x, &w, bias, residual});
    Tensor y = make(s, wide);
    // The residual is cuBLASLt's C with beta = 1: the skip connection costs no extra pass.
    lt_->linear(P(x), P(w), bias ? P(*bias) : nullptr, residual ? P(*residual) : nullptr, P(y), M, N, K, wide, stream());
    return y;
  }

  // One buffer [n, N, K] holding the weights back to back, each a view of it: views keep the pool's
  // 256-byte alignment, so weights whose size breaks it stay as they are.
  std::vector<Tensor> pack_weights(const std::vector<Tensor>& ws) override {
    size_t bytes = size_t(ws.empty() ? 0 : ws[0].numel()) * 2;
    bool ok = ws.size() > 1 && ws[0].rank() == 2 && bytes % 256 == 0;
    for (const Tensor& w : ws) ok = ok && w.shape == ws[0].shape && W(w) == W(ws[0]);
    if (!ok) return ws;
    Tensor all = make({int64_t(ws.size()), ws[0].dim(0), ws[0].dim(1)}, W(ws[0]));
    std::vector<Tensor> out;
    for (size_t i = 0; i < ws.size(); i++) {
      out.push_back(view(all, i * bytes, ws[i].shape));
      check(cudaMemcpyAsync(P(out.back()), P(ws[i]), bytes, cudaMemcpyDeviceToDevice, stream()), "packing weights");
    }
    return out;
  }
  // Weights lying back to back (pack_weights') are one batched GEMM: x is every batch entry's operand
  // (batch stride 0), the products land in one buffer and come back as views of it.
  std::vector<Tensor> linears_impl(const Tensor& x, const std::vector<Tensor>& ws) override {
    int64_t K = x.dim(-1), N = ws[0].dim(0), M = x.numel() / K, n = int64_t(ws.size());
    bool packed = n > 1 && (M * N * 2) % 256 == 0;
    for (int64_t i = 0; packed && i < n; i++)
      packed = ws[size_t(i)].shape == ws[0].shape && W(ws[size_t(i)]) == W(ws[0]) &&
               P(ws[size_t(i)]) == static_cast<const char*>(P(ws[0])) + i * N * K * 2;
    if (!packed) return Backend::linears_impl(x, ws);
    bool wide = same("linears", {&x, &ws[0]});
    Shape s = x.shape;
    s.back() = N;
    Tensor all = make({n, M, N}, wide);
    if (!lt_->linears(P(x), P(ws[0]), P(all), n, M, N, K, wide, stream())) return Backend::linears_impl(x, ws);
    std::vector<Tensor> out;
    for (int64_t i = 0; i < n; i++) out.push_back(view(all, size_t(i * M * N) * 2, s));
    return out;
  }

  // cuDNN when it loaded, PG25_DISABLE_CUDNN is unset, and it has a plan for the shape; the notice of a
  // missing library goes to the first engine of the process only.
  void open_cudnn() {
    const char* off = platform::env("PG25_DISABLE_CUDNN");
    if (off && *off && std::strcmp(off, "0") != 0) return;
    std::string why;
    dnn_ = cuda::Cudnn::shared(device_, why);
    static std::atomic<bool> told{false};
    if (!dnn_ && !told.exchange(true))
      notices_.push_back(
          why +
          ": convolutions run as im2col + cuBLASLt GEMMs, slower (set PG25_CUDA_LIBS to its folder, or install nvidia-cudnn-cu12/13)");
  }
  std::vector<std::string> take_notices() override {
    std::lock_guard<std::mutex> g(notices_mu_);
    return std::move(notices_);
  }
  Tensor conv2d_impl(const Tensor& x, const Tensor& w_in, const Tensor* bias, int stride, int pad, const Tensor* residual) override {
    int64_t H = x.dim(2), W = x.dim(3), kh = w_in.dim(2), kw = w_in.dim(3);
    bool wide = same("conv2d", {&x, &w_in, bias, residual});
    Layout layout = one_layout("conv2d", {&x, residual});
    // The kernel in the activations' layout (KRSC beside NHWC): models load it so, other callers' is converted here.
    Tensor w = to_layout(w_in, layout);
    Tensor y = make({x.dim(0), w.dim(0), (H + 2 * pad - kh) / stride + 1, (W + 2 * pad - kw) / stride + 1}, wide, layout);
    cuda::convolve({*lt_, dnn_.get(), stream_owner_, stream()}, x, w, bias, stride, pad, residual, y, wide);
    return y;
  }

  Tensor group_norm_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, int groups, float eps, bool silu,
                         const Tensor* add) override {
    int64_t B = x.dim(0), C = x.dim(1);
    bool wide = same("group_norm", {&x, &gamma, &beta, add});
    const void* a = add ? P(*add) : nullptr;
    int64_t HW = x.numel() / (B * C);
    if (NHWC(x)) {
      // Wider than the kernel's shared memory holds: through NCHW (no model here has such a layer).
      if (C > cuda::kGroupNormNhwcMaxChannels)
        return to_layout(group_norm(to_layout(x, Layout::NCHW), gamma, beta, groups, eps, silu, add), Layout::NHWC);
      Tensor y = make(x.shape, wide, Layout::NHWC);
      cuda::GroupNormPlan plan = cuda::plan_group_norm_nhwc(B, C, HW, groups);
      CudaBuffer scratch(size_t(plan.scratch_floats) * 4, stream_owner_);
      cuda::group_norm_nhwc(P(x), a, P(gamma), P(beta), P(y), B, C, HW, groups, eps, silu, wide, plan, static_cast<float*>(scratch.ptr),
                            stream());
      LAUNCHED("group_norm");
      return y;
    }
    Tensor y = make(x.shape, wide);
    cuda::GroupNormPlan plan = cuda::plan_group_norm(B, C, HW, groups);
    CudaBuffer scratch(size_t(plan.scratch_floats) * 4, stream_owner_);
    cuda::group_norm(P(x), a, P(gamma), P(beta), P(y), B, C, HW, groups, eps, silu, wide, plan, static_cast<float*>(scratch.ptr), stream());
    LAUNCHED("group_norm");
    return y;
  }
  Tensor layer_norm_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) override {
    int64_t C = x.dim(-1);
    bool wide = same("layer_norm", {&x, &gamma, &beta});
    Tensor y = make(x.shape, wide);
    cuda::layer_norm(P(x), P(gamma), P(beta), P(y), x.numel() / C, C, eps, wide, stream());
    LAUNCHED("layer_norm");
    return y;
  }
  Tensor attention_impl(const Tensor& q, const Tensor& k, const Tensor& v, int heads, bool causal) override {
    int64_t C = q.dim(2);
    if (C / heads > 512) throw Error(Code::Unsupported, "attention heads wider than 512 channels are not supported on the GPU");
    bool wide = same("attention", {&q, &k, &v});
    Tensor y = make(q.shape, wide);
    cuda::attention(P(q), P(k), P(v), P(y), q.dim(0), q.dim(1), k.dim(1), C, heads, causal, wide, stream());
    LAUNCHED("attention");
    return y;
  }
  Tensor pad2d_impl(const Tensor& x, int left, int right, int top, int bottom) override {
    int64_t B = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
    Tensor y = make({B, C, H + top + bottom, W + left + right}, pg25::W(x), x.layout);
    cuda::pad2d(P(x), P(y), B, C, H, W, left, top, H + top + bottom, W + left + right, NHWC(x), stream());
    LAUNCHED("pad2d");
    return y;
  }
  Tensor upsample_nearest_impl(const Tensor& x, int64_t oh, int64_t ow) override {
    Tensor y = make({x.dim(0), x.dim(1), oh, ow}, W(x), x.layout);
    cuda::upsample_nearest(P(x), P(y), x.dim(0), x.dim(1), x.dim(2), x.dim(3), oh, ow, NHWC(x), stream());
    LAUNCHED("upsample");
    return y;
  }
  Tensor concat_impl(const Tensor& a, const Tensor& b, int axis) override {
    ConcatPlan p = plan_concat(a, b, axis);
    Tensor y = make(p.shape, same("concat", {&a, &b}), a.layout);
    size_t ca = size_t(p.a_run) * 2, cb = size_t(p.b_run) * 2;
    check(cudaMemcpy2DAsync(P(y), ca + cb, P(a), ca, ca, size_t(p.outer), cudaMemcpyDeviceToDevice, stream()), "concat");
    check(cudaMemcpy2DAsync(static_cast<char*>(P(y)) + ca, ca + cb, P(b), cb, cb, size_t(p.outer), cudaMemcpyDeviceToDevice, stream()),
          "concat");
    return y;
  }

  Tensor slice0_impl(const Tensor& x, int64_t start, int64_t count) override {
    Shape s = x.shape;
    s[0] = count;
    int64_t per = x.numel() / x.dim(0);
    // A view where it keeps the pool's 256-byte alignment (which the kernels' 16-byte accesses and
    // cuDNN's plans rely on): guidance's two halves of a UNet output are read in place.
    size_t offset = size_t(start * per) * 2;
    if (offset % 256 == 0) return view(x, offset, s, x.layout);
    Tensor y = make(s, W(x), x.layout);
    check(cudaMemcpyAsync(P(y), static_cast<const char*>(P(x)) + start * per * 2, size_t(count * per) * 2, cudaMemcpyDeviceToDevice,
                          stream()),
          "slice");
    return y;
  }
  // NHWC images are token sequences already: both directions are views.
  Tensor image_to_tokens_impl(const Tensor& x) override {
    int64_t B = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
    if (NHWC(x)) return Tensor{x.buf, {B, HW, C}};
    Tensor y = make({B, HW, C}, W(x));
    cuda::transpose_last2(P(x), P(y), B, B, C, HW, stream());
    LAUNCHED("image_to_tokens");
    return y;
  }
  Tensor tokens_to_image_impl(const Tensor& x, int64_t h, int64_t w) override {
    int64_t B = x.dim(0), C = x.dim(2);
    if (layout_ == Layout::NHWC) return Tensor{x.buf, {B, C, h, w}, Layout::NHWC};
    Tensor y = make({B, C, h, w}, W(x));
    cuda::transpose_last2(P(x), P(y), B, B, h * w, C, stream());
    LAUNCHED("tokens_to_image");
    return y;
  }
  Tensor embedding_impl(const std::vector<int32_t>& ids, int64_t batch, const Tensor& table) override {
    int64_t V = table.dim(0), C = table.dim(1), L = int64_t(ids.size()) / batch;
    for (int32_t id : ids)
      if (id < 0 || id >= V)
        throw Error(Code::InvalidArgument, "token id " + std::to_string(id) + " is outside the vocabulary of " + std::to_string(V));
    CudaBuffer dev(ids.size() * 4, stream_owner_);
    check(cudaMemcpyAsync(dev.ptr, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice, stream()), "token ids");
    Tensor y = make({batch, L, C}, W(table));
    cuda::embedding(static_cast<int32_t*>(dev.ptr), P(table), P(y), int64_t(ids.size()), C, stream());
    LAUNCHED("embedding");
    return y;
  }
  Tensor gather_rows_impl(const Tensor& x, const std::vector<int64_t>& rows) override {
    int64_t B = x.dim(0), L = x.dim(1), C = x.dim(2);
    Tensor y = make({B, C}, W(x));
    for (int64_t b = 0; b < B; b++)
      check(cudaMemcpyAsync(static_cast<char*>(P(y)) + b * C * 2, static_cast<const char*>(P(x)) + (b * L + rows[size_t(b)]) * C * 2,
                            size_t(C) * 2, cudaMemcpyDeviceToDevice, stream()),
            "gather_rows");
    return y;
  }
  std::vector<uint8_t> latent_rgb(const Tensor& x, const std::vector<float>& m, const std::vector<float>& bias) override {
    int64_t B = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
    CudaBuffer params((m.size() + 3) * 4, stream_owner_), out(size_t(B * HW * 3), stream_owner_);
    std::vector<float> host(m);
    host.insert(host.end(), bias.begin(), bias.end());
    check(cudaMemcpyAsync(params.ptr, host.data(), host.size() * 4, cudaMemcpyHostToDevice, stream()), "preview parameters");
    cuda::latent_rgb(P(x), static_cast<float*>(params.ptr), static_cast<float*>(params.ptr) + m.size(), static_cast<uint8_t*>(out.ptr), B,
                     C, HW, NHWC(x), W(x), stream());
    LAUNCHED("latent_rgb");
    std::vector<uint8_t> result(size_t(B * HW * 3));
    check(cudaMemcpyAsync(result.data(), out.ptr, result.size(), cudaMemcpyDeviceToHost, stream()), "preview download");
    check(cudaStreamSynchronize(stream()), "preview download");
    return result;
  }
  std::vector<uint8_t> to_rgb8(const Tensor& x) override {
    int64_t B = x.dim(0), HW = x.dim(2) * x.dim(3);
    CudaBuffer out(size_t(B * HW * 3), stream_owner_);
    cuda::to_rgb8(P(x), static_cast<uint8_t*>(out.ptr), B, HW, NHWC(x), W(x), stream());
    LAUNCHED("to_rgb8");
    std::vector<uint8_t> result(size_t(B * HW * 3));
    check(cudaMemcpyAsync(result.data(), out.ptr, result.size(), cudaMemcpyDeviceToHost, stream()), "image download");
    check(cudaStreamSynchronize(stream()), "image download");
    return result;
  }

 private:
  int device_;
  Layout layout_;  // of images and convolution kernels
  std::shared_ptr<Stream> stream_owner_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::CublasLt> lt_;
  std::shared_ptr<cuda::Cudnn>
      dnn_;  // the process's for this GPU; null without cuDNN 9 (or with PG25_DISABLE_CUDNN=1): convolutions go through im2col
  std::mutex notices_mu_;  // recordings add notices from the threads jobs run on
  std::vector<std::string> notices_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

}  // namespace pg25

namespace pg25::cuda {
std::string runtime_version() { return cuda_version(CUDART_VERSION); }
}  // namespace pg25::cuda
