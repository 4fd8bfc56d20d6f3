#include "cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>

#include "../core/error.h"
#include "../platform/memory.h"
#include "cpu_buffer.h"
#include "gemm.h"
#include "gemm_kernels.h"
#include "threadpool.h"
#include "vec_math.h"

namespace pg25 {
namespace {

using cpu::CpuBuffer;
using cpu::g_bytes;

Tensor make(const Shape& shape, bool weight = false) {
  Tensor t;
  t.shape = shape;
  size_t room = 0;
  if (weight && t.rank() >= 2 && t.numel() > 0) {
    const cpu::MicroKernel& mk = cpu::micro_kernel();
    int64_t rows = t.dim(0), cols = t.numel() / rows;
    room = std::max(cpu::packed_floats(rows, cols, mk.mr), cpu::packed_floats(rows, cols, mk.nr));
  }
  t.buf = std::make_shared<CpuBuffer>(size_t(t.numel()), weight, room);
  return t;
}

// A weight at half width, with room for either panel layout like make()'s.
Tensor make_half(const Shape& shape, cpu::Half kind) {
  Tensor t;
  t.shape = shape;
  const cpu::MicroKernel& mk = cpu::micro_kernel();
  int64_t rows = t.dim(0), cols = t.numel() / std::max<int64_t>(1, rows);
  bool paired = kind == cpu::Half::BF16 && cpu::bf16_paired();
  size_t room = std::max(cpu::packed_halves(rows, cols, mk.mr, paired), cpu::packed_halves(rows, cols, mk.nr, paired));
  t.buf = std::make_shared<CpuBuffer>(size_t(t.numel()), kind, room, rows);
  return t;
}

CpuBuffer* buf(const Tensor& t) { return static_cast<CpuBuffer*>(t.buf.get()); }
float* D(const Tensor& t) { return buf(t)->plain(); }

// Whether `t` holds the only reference to an activation buffer that nothing was derived from (no
// memo): an op may then write its output over it.
bool last_reference(const Tensor& t) {
  if (t.buf.use_count() != 1 || buf(t)->weight) return false;
  std::lock_guard<std::mutex> lock(t.buf->memo_mu);
  return t.buf->memo == nullptr;
}

// Items per parallel chunk for items of `per_item` values: a chunk of fewer than ~32K values costs less
// than waking a worker (~5 us).
int64_t grain(int64_t per_item) { return std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, per_item)); }

void check(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(Code::Internal, std::string("cpu backend ") + op + ": " + what);
}

// y = pass(x) for one of vec_math's elementwise passes, over the threads in chunks.
Tensor elementwise(const Tensor& x, void (*pass)(const float*, float*, int64_t)) {
  Tensor y = make(x.shape);
  const float* a = D(x);
  float* o = D(y);
  cpu::parallel_for(x.numel(), 1 << 14, [&](int64_t b, int64_t e) { pass(a + b, o + b, e - b); });
  return y;
}

class CpuBackend final : public Backend {
 public:
  CpuBackend() { cpu::backend_opened(); }
  ~CpuBackend() override {
    if (pages_ != platform::kInvalidFile) platform::close_file(pages_);
    cpu::backend_closed();
  }
  std::string name() const override { return "cpu"; }
  // The weights' storage (set_weight_precision): float32, or bf16 / fp16 for the rank >= 2 ones.
  cpu::Half half_ = cpu::Half::None;
  // The scratch file weights are paged out to (made on the first page_out), and its end.
  std::mutex page_mu_;
  platform::FileHandle pages_ = platform::kInvalidFile;
  uint64_t page_end_ = 0;
  std::string page_dir_;

  Tensor from_host(const float* data, const Shape& shape) override {
    Tensor t = make(shape);
    std::memcpy(D(t), data, size_t(t.numel()) * 4);
    return t;
  }
  Tensor weight(const std::string& name, const float* data, const Shape& shape, Storage) override {
    if (half_ != cpu::Half::None && shape.size() >= 2) {
      Tensor t = make_half(shape, half_);
      size_t n = size_t(t.numel());
      float limit = cpu::half_max(half_);
      for (size_t i = 0; i < n; i++)
        if (std::fabs(data[i]) > limit)
          throw Error(Code::BadWeights, "weight " + name + " holds " + std::to_string(data[i]) + ", beyond what precision '" +
                                            precision_name() + "' can store; use precision 'fp32'");
      cpu::narrow(data, buf(t)->hdata, n, half_);
      return t;
    }
    Tensor t = make(shape, true);
    std::memcpy(D(t), data, size_t(t.numel()) * 4);
    return t;
  }
  // Precision 'fp16': the file's float16 bits as they are, for the weights stored at half width.
  bool takes_f16(Storage) const override { return half_ == cpu::Half::F16; }
  Tensor weight_f16(const std::string&, const uint16_t* bits, const Shape& shape, Storage) override {
    if (half_ != cpu::Half::F16 || shape.size() < 2) return {};
    Tensor t = make_half(shape, half_);
    std::memcpy(buf(t)->hdata, bits, size_t(t.numel()) * 2);
    return t;
  }
  void set_weight_precision(const std::string& p) override {
    if (p == "fp32") half_ = cpu::Half::None;
    else if (p == "bf16") half_ = cpu::Half::BF16;
    else if (p == "fp16") half_ = cpu::Half::F16;
    else throw Error(Code::InvalidArgument, "precision must be 'fp32', 'bf16' or 'fp16', got '" + p + "'");
  }
  const char* precision_name() const { return half_ == cpu::Half::BF16 ? "bf16" : half_ == cpu::Half::F16 ? "fp16" : "fp32"; }
  Tensor cast_impl(const Tensor& x, Storage) override { return x; }
  void copy_into(const Tensor& dst, const Tensor& src) override {
    check(dst.numel() == src.numel(), "copy_into", shape_str(src.shape) + " into " + shape_str(dst.shape));
    CpuBuffer *d = buf(dst), *s = buf(src);
    if (d == s) return;
    check(!d->paged_out() && !s->paged_out(), "copy_into", "a weight paged out of memory");
    if (s->layout == cpu::Layout::Plain && !s->hdata) return d->write_plain(s->data);
    if (d->layout == cpu::Layout::Plain && !d->hdata) return s->read_plain(d->data);
    std::vector<float> tmp(s->count);
    s->read_plain(tmp.data());
    d->write_plain(tmp.data());
  }
  void to_host(const Tensor& t, float* out) override { buf(t)->read_plain(out); }
  // The CPU is the NCHW reference: no NHWC tensor is ever made here.
  Tensor to_layout_impl(const Tensor& x, Layout layout) override {
    check(layout == Layout::NCHW, "to_layout", "the CPU backend keeps images NCHW");
    return x;
  }
  Tensor repeat_batch_impl(const Tensor& x, int64_t times, Layout layout) override {
    to_layout(x, layout);
    if (times == 1) return x;
    Shape s = x.shape;
    s[0] *= times;
    Tensor y = make(s);
    for (int64_t k = 0; k < times; k++) buf(x)->read_plain(D(y) + k * x.numel());
    return y;
  }
  bool page_out(const std::vector<Tensor>& weights) override {
    std::lock_guard<std::mutex> g(page_mu_);
    if (pages_ == platform::kInvalidFile) {
      pages_ = platform::open_scratch_file(&page_dir_);
      if (pages_ == platform::kInvalidFile)
        throw Error(Code::OutOfMemory,
                    "CPU backend: cannot make a scratch file in " + page_dir_ + " to page weights out to: " + platform::last_error());
    }
    for (const Tensor& w : weights) buf(w)->page_out(pages_, page_end_, page_dir_);
    platform::return_free_memory();
    return true;
  }
  void page_in(const std::vector<Tensor>& weights) override {
    std::lock_guard<std::mutex> g(page_mu_);
    for (const Tensor& w : weights) buf(w)->page_in(pages_, page_dir_);
  }
  size_t bytes_in_use() const override { return g_bytes.bytes(); }
  size_t peak_bytes() const override { return g_bytes.peak(); }
  void reset_peak() override { g_bytes.reset_peak(); }

  Tensor lincomb_impl(const std::vector<std::pair<double, const Tensor*>>& terms) override {
    check(!terms.empty(), "lincomb", "no terms");
    const Shape& s = terms[0].second->shape;
    for (auto& t : terms) check(t.second->shape == s, "lincomb", "shape mismatch " + shape_str(t.second->shape) + " vs " + shape_str(s));
    Tensor y = make(s);
    float* o = D(y);
    std::vector<const float*> src;
    std::vector<double> c;
    for (auto& t : terms) {
      src.push_back(D(*t.second));
      c.push_back(t.first);
    }
    cpu::parallel_for(y.numel(), 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; i++) {
        double acc = 0;
        for (size_t k = 0; k < src.size(); k++) acc += c[k] * double(src[k][i]);
        o[i] = float(acc);
      }
    });
    return y;
  }

  Tensor add_impl(const Tensor& a, const Tensor& b) override {
    check(a.shape == b.shape, "add", shape_str(a.shape) + " vs " + shape_str(b.shape));
    Tensor y = make(a.shape);
    const float *x = D(a), *z = D(b);
    float* o = D(y);
    cpu::parallel_for(a.numel(), 1 << 14, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; i++) o[i] = x[i] + z[i];
    });
    return y;
  }

  Tensor silu_impl(const Tensor& x) override { return elementwise(x, cpu::silu); }
  // GELU and quick GELU through vec_math's own exp and erf: libm's differ between platforms in the last
  // bit, and the Windows build must give the Linux build's image bytes.
  Tensor gelu_impl(const Tensor& x) override { return elementwise(x, cpu::gelu); }
  Tensor quick_gelu_impl(const Tensor& x) override { return elementwise(x, cpu::quick_gelu); }

  Tensor geglu_impl(const Tensor& x) override {
    int64_t n2 = x.dim(-1), n = n2 / 2, rows = x.numel() / n2;
    check(n2 % 2 == 0, "geglu", "odd last axis");
    Shape s = x.shape;
    s.back() = n;
    Tensor y = make(s);
    const float* a = D(x);
    float* o = D(y);
    cpu::parallel_for(rows, grain(n2), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; r++) cpu::geglu(a + r * n2, a + r * n2 + n, o + r * n, n);
    });
    return y;
  }

  Tensor channel_affine_impl(const Tensor& x, const std::vector<float>& scale, const std::vector<float>& shift) override {
    int64_t B = x.dim(0), C = x.dim(1), HW = x.numel() / (B * C);
    check(int64_t(scale.size()) == C && int64_t(shift.size()) == C, "channel_affine", "channel count");
    Tensor y = make(x.shape);
    const float* a = D(x);
    float* o = D(y);
    for (int64_t bc = 0; bc < B * C; bc++) {
      int64_t c = bc % C;
      for (int64_t i = 0; i < HW; i++) o[bc * HW + i] = a[bc * HW + i] * scale[c] + shift[c];
    }
    return y;
  }

  // x [B, C, ...] + t [B, C] broadcast over the rest (GroupNorm's `add`, as diffusers adds it first).
  static Tensor add_per_channel(const Tensor& x, const Tensor& t) {
    int64_t B = x.dim(0), C = x.dim(1), HW = x.numel() / (B * C);
    check(t.numel() == B * C, "group_norm", "add " + shape_str(t.shape) + " for " + shape_str(x.shape));
    Tensor y = make(x.shape);
    const float *a = D(x), *v = D(t);
    float* o = D(y);
    cpu::parallel_for(B * C, grain(HW), [&](int64_t s, int64_t e) {
      for (int64_t bc = s; bc < e; bc++)
        for (int64_t i = 0; i < HW; i++) o[bc * HW + i] = a[bc * HW + i] + v[bc];
    });
    return y;
  }

  Tensor linear_impl(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor* residual) override {
    int64_t K = x.dim(-1), N = w.dim(0), M = x.numel() / K;
    check(w.rank() == 2 && w.dim(1) == K, "linear", "input " + shape_str(x.shape) + " weight " + shape_str(w.shape));
    Shape s = x.shape;
    s.back() = N;
    Tensor y = make(s);
    cpu::Epilogue e;
    if (residual) {
      check(residual->shape == s, "linear", "residual " + shape_str(residual->shape) + " for output " + shape_str(s));
      e.residual = D(*residual);
    }
    e.col_bias = bias ? D(*bias) : nullptr;
    cpu::OperandA a;
    a.plain = D(x);
    a.ld = K;
    cpu::OperandB b;
    b.packed = buf(w)->panels(cpu::Layout::PanelsB, N, K);
    b.packed_half = buf(w)->half_panels(cpu::Layout::PanelsB, N, K);
    b.half = buf(w)->half;
    if (!b.packed && !b.packed_half) {
      b.plain = D(w);
      b.ld = K;
      b.trans = true;
    }
    cpu::gemm(M, N, K, a, b, D(y), N, e);
    return y;
  }

  // Per image: out[Cout, P] = W[Cout, K] x im2col(x)[K, P], with the im2col columns packed tile by tile
  // straight from the image (1x1 convolutions read the image as the matrix it already is); bias and
  // residual are added as each tile is stored.
  Tensor conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad, const Tensor* residual) override {
    return conv(x, w, bias, stride, pad, residual, 1);
  }

  // The packing reads x at half the coordinates: bit for bit the convolution of the upsampled copy.
  Tensor upsample2x_conv2d_impl(const Tensor& x, const Tensor& w, const Tensor* bias, int pad) override {
    return conv(x, w, bias, 1, pad, nullptr, 2);
  }

  // x viewed as upsampled `up` times (1, or 2 with stride 1) under a convolution.
  Tensor conv(const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad, const Tensor* residual, int64_t up) {
    int64_t B = x.dim(0), Cin = x.dim(1), H = x.dim(2) * up, W = x.dim(3) * up;
    int64_t Cout = w.dim(0), kh = w.dim(2), kw = w.dim(3);
    check(w.rank() == 4 && w.dim(1) == Cin, "conv2d", "input " + shape_str(x.shape) + " weight " + shape_str(w.shape));
    int64_t Ho = (H + 2 * pad - kh) / stride + 1, Wo = (W + 2 * pad - kw) / stride + 1;
    int64_t P = Ho * Wo, K = Cin * kh * kw;
    Tensor y = make({B, Cout, Ho, Wo});
    if (residual)
      check(residual->shape == y.shape, "conv2d", "residual " + shape_str(residual->shape) + " for output " + shape_str(y.shape));
    cpu::OperandA a;
    a.packed = buf(w)->panels(cpu::Layout::PanelsA, Cout, K);
    a.packed_half = buf(w)->half_panels(cpu::Layout::PanelsA, Cout, K);
    a.half = buf(w)->half;
    if (!a.packed && !a.packed_half) {
      a.plain = D(w);
      a.ld = K;
    }
    bool pointwise = up == 1 && kh == 1 && kw == 1 && stride == 1 && pad == 0;
    for (int64_t n = 0; n < B; n++) {
      const float* xin = D(x) + n * Cin * (H / up) * (W / up);
      cpu::ConvInput cv{xin, Cin, H, W, kh, kw, stride, pad, Ho, Wo, up};
      cpu::OperandB b;
      if (pointwise) {
        b.plain = xin;
        b.ld = P;
      } else {
        b.conv = &cv;
      }
      cpu::Epilogue e;
      e.row_bias = bias ? D(*bias) : nullptr;
      e.residual = residual ? D(*residual) + n * Cout * P : nullptr;
      cpu::gemm(Cout, P, K, a, b, D(y) + n * Cout * P, P, e);
    }
    return y;
  }

  Tensor group_norm_impl(const Tensor& x_in, const Tensor& gamma, const Tensor& beta, int groups, float eps, bool silu,
                         const Tensor* add) override {
    // x_in's last reference is the caller's (Backend::group_norm's): nothing else can read it, so the
    // output may overwrite it, as it may the sum with `add`. Each group's moments are read before its
    // values are rewritten.
    bool own = add || last_reference(x_in);
    Tensor x = add ? add_per_channel(x_in, *add) : x_in;
    int64_t B = x.dim(0), C = x.dim(1), HW = x.numel() / (B * C);
    check(C % groups == 0, "group_norm", "channels not divisible by groups");
    int64_t cg = C / groups;
    Tensor y = own ? x : make(x.shape);
    const float *a = D(x), *g = D(gamma), *bt = D(beta);
    float* o = D(y);
    cpu::parallel_for(B * groups, grain(cg * HW), [&](int64_t s, int64_t e) {
      for (int64_t bg = s; bg < e; bg++) {
        int64_t b = bg / groups, gi = bg % groups;
        const float* src = a + (b * C + gi * cg) * HW;
        int64_t n = cg * HW;
        double mean, var;
        cpu::moments(src, n, mean, var);
        double rstd = 1.0 / std::sqrt(var + eps);
        for (int64_t c = 0; c < cg; c++) {
          int64_t ch = gi * cg + c;
          float sc = float(rstd) * g[ch], sh = bt[ch] - float(mean * rstd) * g[ch];
          cpu::affine(src + c * HW, o + (b * C + ch) * HW, HW, sc, sh, silu);
        }
      }
    });
    return y;
  }

  Tensor layer_norm_impl(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) override {
    int64_t C = x.dim(-1), rows = x.numel() / C;
    Tensor y = make(x.shape);
    const float *a = D(x), *g = D(gamma), *bt = D(beta);
    float* o = D(y);
    cpu::parallel_for(rows, grain(C), [&](int64_t s, int64_t e) {
      for (int64_t r = s; r < e; r++) {
        const float* src = a + r * C;
        double mean, var;
        cpu::moments(src, C, mean, var);
        cpu::normalize(src, o + r * C, C, float(mean), float(1.0 / std::sqrt(var + eps)), g, bt);
      }
    });
    return y;
  }

  Tensor attention_impl(const Tensor& q, const Tensor& k, const Tensor& v, int heads, bool causal) override {
    int64_t B = q.dim(0), Nq = q.dim(1), C = q.dim(2), Nk = k.dim(1);
    check(k.dim(0) == B && v.dim(0) == B && k.dim(2) == C && v.dim(2) == C && v.dim(1) == Nk && C % heads == 0, "attention",
          "q " + shape_str(q.shape) + " k " + shape_str(k.shape) + " v " + shape_str(v.shape));
    int64_t d = C / heads;
    float scale = 1.f / std::sqrt(float(d));
    Tensor y = make(q.shape);
    // One task per (batch, head): its keys and values are packed once for the kernel, then query blocks
    // of QB rows go through scores, softmax and the product with V, so the score buffer is QB x Nk,
    // never Nq x Nk. With precision 'bf16' on the AVX512-BF16 kernel both products run in bf16 as the
    // weights' do (as PyTorch's bfloat16 attention): keys and values stored as bf16 pairs, queries and
    // probabilities rounded per block; scores and softmax stay float32.
    const int64_t QB = 64;
    const int nr = cpu::micro_kernel().nr;
    const bool bf16 = half_ == cpu::Half::BF16 && cpu::bf16_paired();
    const float *Q = D(q), *Kd = D(k), *V = D(v);
    float* O = D(y);
    cpu::parallel_for(B * heads, 1, [&](int64_t s, int64_t e) {
      std::vector<float> S(size_t(QB * Nk)), kp(cpu::packed_floats(Nk, d, nr)), vp(cpu::packed_floats(d, Nk, nr));
      std::vector<uint16_t> kh(bf16 ? cpu::packed_halves(Nk, d, nr, true) : 0), vh(bf16 ? cpu::packed_halves(d, Nk, nr, true) : 0);
      // Packed panels [K][nr] (float32) into `dst` as bf16 pairs, the layout of a paired weight.
      auto pair_up = [&](const std::vector<float>& f, int64_t rows, int64_t K, std::vector<uint16_t>& dst, cpu::OperandB& op) {
        const int64_t Kp = K + (K & 1);
        for (int64_t p = 0; p * nr < rows; p++) cpu::bf16_pairs(f.data() + p * K * nr, K, nr, dst.data() + p * Kp * nr);
        op = {};
        op.packed_half = dst.data();
        op.half = cpu::Half::BF16;
      };
      for (int64_t t = s; t < e; t++) {
        int64_t b = t / heads, h = t % heads;
        cpu::OperandB kb, vb;
        kb.plain = Kd + b * Nk * C + h * d;
        kb.ld = C;
        kb.trans = true;
        cpu::pack_b_full(kb, Nk, d, kp.data());
        vb.plain = V + b * Nk * C + h * d;
        vb.ld = C;
        cpu::pack_b_full(vb, d, Nk, vp.data());
        if (bf16) {
          pair_up(kp, Nk, d, kh, kb);
          pair_up(vp, d, Nk, vh, vb);
        } else {
          kb = {};
          kb.packed = kp.data();
          vb = {};
          vb.packed = vp.data();
        }
        for (int64_t q0 = 0; q0 < Nq; q0 += QB) {
          int64_t nq = std::min(QB, Nq - q0);
          cpu::OperandA qa;
          qa.plain = Q + (b * Nq + q0) * C + h * d;
          qa.ld = C;
          cpu::gemm(nq, Nk, d, qa, kb, S.data(), Nk, {}, false);
          for (int64_t i = 0; i < nq; i++) cpu::softmax(S.data() + i * Nk, Nk, causal ? std::min(Nk, q0 + i + 1) : Nk, scale);
          cpu::OperandA sa;
          sa.plain = S.data();
          sa.ld = Nk;
          cpu::gemm(nq, d, Nk, sa, vb, O + (b * Nq + q0) * C + h * d, C, {}, false);
        }
      }
    });
    return y;
  }

  Tensor pad2d_impl(const Tensor& x, int left, int right, int top, int bottom) override {
    int64_t B = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
    int64_t Ho = H + top + bottom, Wo = W + left + right;
    Tensor y = make({B, C, Ho, Wo});
    std::memset(D(y), 0, size_t(y.numel()) * 4);
    const float* a = D(x);
    float* o = D(y);
    for (int64_t bc = 0; bc < B * C; bc++)
      for (int64_t r = 0; r < H; r++) std::memcpy(o + (bc * Ho + r + top) * Wo + left, a + (bc * H + r) * W, size_t(W) * 4);
    return y;
  }

  Tensor upsample_nearest_impl(const Tensor& x, int64_t oh, int64_t ow) override {
    int64_t B = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
    Tensor y = make({B, C, oh, ow});
    const float* a = D(x);
    float* o = D(y);
    float sy = float(H) / float(oh), sx = float(W) / float(ow);
    std::vector<int64_t> ys(static_cast<size_t>(oh)), xs(static_cast<size_t>(ow));
    for (int64_t i = 0; i < oh; i++) ys[size_t(i)] = std::min(H - 1, int64_t(float(i) * sy));
    for (int64_t i = 0; i < ow; i++) xs[size_t(i)] = std::min(W - 1, int64_t(float(i) * sx));
    cpu::parallel_for(B * C, grain(oh * ow), [&](int64_t s, int64_t e) {
      for (int64_t bc = s; bc < e; bc++)
        for (int64_t yy = 0; yy < oh; yy++)
          for (int64_t xx = 0; xx < ow; xx++) o[(bc * oh + yy) * ow + xx] = a[(bc * H + ys[size_t(yy)]) * W + xs[size_t(xx)]];
    });
    return y;
  }

  Tensor concat_impl(const Tensor& a, const Tensor& b, int axis) override {
    ConcatPlan p = plan_concat(a, b, axis);
    Tensor y = make(p.shape);
    int64_t ca = p.a_run, cb = p.b_run;
    for (int64_t o = 0; o < p.outer; o++) {
      std::memcpy(D(y) + o * (ca + cb), D(a) + o * ca, size_t(ca) * 4);
      std::memcpy(D(y) + o * (ca + cb) + ca, D(b) + o * cb, size_t(cb) * 4);
    }
    return y;
  }

  Tensor slice0_impl(const Tensor& x, int64_t start, int64_t count) override {
    check(start >= 0 && count >= 0 && start + count <= x.dim(0), "slice0", "range outside " + shape_str(x.shape));
    Shape s = x.shape;
    s[0] = count;
    Tensor y = make(s);
    int64_t per = x.numel() / x.dim(0);
    std::memcpy(D(y), D(x) + start * per, size_t(count * per) * 4);
    return y;
  }

  Tensor image_to_tokens_impl(const Tensor& x) override {
    int64_t B = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
    Tensor y = make({B, HW, C});
    const float* a = D(x);
    float* o = D(y);
    cpu::parallel_for(B * HW, grain(C), [&](int64_t s, int64_t e) {
      for (int64_t t = s; t < e; t++) {
        int64_t b = t / HW, p = t % HW;
        for (int64_t c = 0; c < C; c++) o[t * C + c] = a[(b * C + c) * HW + p];
      }
    });
    return y;
  }

  Tensor tokens_to_image_impl(const Tensor& x, int64_t h, int64_t w) override {
    int64_t B = x.dim(0), HW = x.dim(1), C = x.dim(2);
    check(HW == h * w, "tokens_to_image", "token count");
    Tensor y = make({B, C, h, w});
    const float* a = D(x);
    float* o = D(y);
    cpu::parallel_for(B * C, grain(HW), [&](int64_t s, int64_t e) {
      for (int64_t bc = s; bc < e; bc++) {
        int64_t b = bc / C, c = bc % C;
        for (int64_t p = 0; p < HW; p++) o[bc * HW + p] = a[(b * HW + p) * C + c];
      }
    });
    return y;
  }

  Tensor embedding_impl(const std::vector<int32_t>& ids, int64_t batch, const Tensor& table) override {
    int64_t V = table.dim(0), C = table.dim(1), L = int64_t(ids.size()) / batch;
    Tensor y = make({batch, L, C});
    for (size_t i = 0; i < ids.size(); i++) {
      if (ids[i] < 0 || ids[i] >= V)
        throw Error(Code::InvalidArgument, "token id " + std::to_string(ids[i]) + " is outside the vocabulary of " + std::to_string(V));
      std::memcpy(D(y) + int64_t(i) * C, D(table) + int64_t(ids[i]) * C, size_t(C) * 4);
    }
    return y;
  }

  Tensor gather_rows_impl(const Tensor& x, const std::vector<int64_t>& rows) override {
    int64_t B = x.dim(0), L = x.dim(1), C = x.dim(2);
    check(int64_t(rows.size()) == B, "gather_rows", "one row per batch entry");
    Tensor y = make({B, C});
    for (int64_t b = 0; b < B; b++) {
      check(rows[b] >= 0 && rows[b] < L, "gather_rows", "row out of range");
      std::memcpy(D(y) + b * C, D(x) + (b * L + rows[b]) * C, size_t(C) * 4);
    }
    return y;
  }

  std::vector<uint8_t> latent_rgb(const Tensor& x, const std::vector<float>& m, const std::vector<float>& bias) override {
    int64_t B = x.dim(0), C = x.dim(1), HW = x.dim(2) * x.dim(3);
    check(int64_t(m.size()) == 3 * C && bias.size() == 3, "latent_rgb", "matrix must be 3 x C");
    std::vector<uint8_t> out(size_t(B * HW * 3));
    const float* a = D(x);
    for (int64_t b = 0; b < B; b++)
      for (int64_t p = 0; p < HW; p++)
        for (int64_t c = 0; c < 3; c++) {
          float v = bias[size_t(c)];
          for (int64_t k = 0; k < C; k++) v += m[size_t(c * C + k)] * a[(b * C + k) * HW + p];
          v = std::isnan(v) ? 0.f : std::min(1.f, std::max(0.f, (v + 1.f) / 2.f));
          out[size_t((b * HW + p) * 3 + c)] = uint8_t(std::nearbyint(v * 255.f));
        }
    return out;
  }

  std::vector<uint8_t> to_rgb8(const Tensor& x) override {
    int64_t B = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
    check(C == 3, "to_rgb8", "expects 3 channels");
    std::vector<uint8_t> out(size_t(B * H * W * 3));
    const float* a = D(x);
    for (int64_t b = 0; b < B; b++)
      for (int64_t c = 0; c < 3; c++)
        for (int64_t p = 0; p < H * W; p++) {
          float v = a[(b * 3 + c) * H * W + p] / 2.f + 0.5f;
          v = std::isnan(v) ? 0.f : std::min(1.f, std::max(0.f, v));
          out[size_t((b * H * W + p) * 3 + c)] = uint8_t(std::nearbyint(v * 255.f));
        }
    return out;
  }
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }
float* cpu_data(const Tensor& t) { return D(t); }

}  // namespace pg25
