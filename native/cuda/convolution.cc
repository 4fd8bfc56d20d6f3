#include "convolution.h"

#include <algorithm>

#include "kernels.h"

namespace pg25::cuda {
namespace {

void* P(const Tensor& t) { return dev_ptr(t); }
const void* opt(const Tensor* t) { return t ? dev_ptr(*t) : nullptr; }
bool nhwc(const Tensor& t) { return t.layout == Layout::NHWC; }

// im2col buffers are cut into chunks of 128 columns or rows (256 bytes of 16-bit values), so every
// chunk's operands keep cuBLASLt's 16-byte alignment, of about 64 MB at any resolution.
int64_t chunk_of(int64_t total, int64_t K) {
  return std::min<int64_t>(total, std::max<int64_t>(256, (int64_t(32) << 20) / std::max<int64_t>(1, K)) / 128 * 128);
}

// Through cuDNN when it has a plan for this shape: the convolution, bias and residual in one graph
// (or, where no engine fuses them, the convolution alone and our epilogue pass). The plans declare
// 16-byte alignment, which our pool allocations (256 bytes) give; anything less takes im2col.
bool through_cudnn(const ConvEngine& e, const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad, const Tensor* residual,
                   const Tensor& y, bool wide) {
  if (!e.dnn) return false;
  uintptr_t bits = reinterpret_cast<uintptr_t>(P(x)) | reinterpret_cast<uintptr_t>(P(w)) | reinterpret_cast<uintptr_t>(P(y)) |
                   reinterpret_cast<uintptr_t>(opt(bias)) | reinterpret_cast<uintptr_t>(opt(residual));
  if (bits % 16) return false;
  const Cudnn::Plan* p = e.dnn->plan({x.dim(0), x.dim(1), x.dim(2), x.dim(3), w.dim(0), w.dim(2), w.dim(3), stride, pad, wide,
                                      bias != nullptr, residual != nullptr, nhwc(x)});
  if (!p) return false;
  std::unique_ptr<CudaBuffer> ws;
  if (int64_t n = Cudnn::workspace_bytes(*p)) ws = std::make_unique<CudaBuffer>(size_t(n), e.stream_owner);
  e.dnn->run(*p, P(x), P(w), opt(bias), opt(residual), P(y), ws ? ws->ptr : nullptr, e.stream);
  if (!Cudnn::fused(*p) && (bias || residual)) {
    conv_epilogue(P(y), opt(bias), opt(residual), y.dim(0), y.dim(1), y.dim(2) * y.dim(3), nhwc(y), wide, e.stream);
    LAUNCHED("conv bias");
  }
  return true;
}

// NHWC: the output's rows are pixels, so the convolution is a linear layer over im2col's rows (over x
// itself for a 1x1 kernel), with the bias and the residual in cuBLASLt's epilogue.
void im2col_nhwc_gemm(const ConvEngine& e, const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad,
                      const Tensor* residual, const Tensor& y, bool wide, bool pointwise) {
  int64_t Cin = x.dim(1), H = x.dim(2), W = x.dim(3), Cout = w.dim(0), kh = w.dim(2), kw = w.dim(3), Ho = y.dim(2), Wo = y.dim(3);
  int64_t rows = y.dim(0) * Ho * Wo, K = Cin * kh * kw;
  if (pointwise) {
    e.lt.linear(P(x), P(w), opt(bias), opt(residual), P(y), rows, Cout, K, wide, e.stream);
    return;
  }
  int64_t chunk = chunk_of(rows, K);
  CudaBuffer col(size_t(K * chunk) * 2, e.stream_owner);
  for (int64_t p0 = 0; p0 < rows; p0 += chunk) {
    int64_t pc = std::min(chunk, rows - p0);
    im2col_nhwc(P(x), col.ptr, Cin, H, W, kh, kw, stride, pad, Ho, Wo, p0, pc, e.stream);
    LAUNCHED("im2col");
    const char* r = residual ? static_cast<const char*>(P(*residual)) + p0 * Cout * 2 : nullptr;
    e.lt.linear(col.ptr, P(w), opt(bias), r, static_cast<char*>(P(y)) + p0 * Cout * 2, pc, Cout, K, wide, e.stream);
  }
}

// NCHW: per image, the kernel [Cout, K] times im2col's columns [K, pixels] (x itself for a 1x1 kernel),
// then one pass for the bias and the residual.
void im2col_nchw_gemm(const ConvEngine& e, const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad,
                      const Tensor* residual, const Tensor& y, bool wide, bool pointwise) {
  int64_t B = x.dim(0), Cin = x.dim(1), H = x.dim(2), W = x.dim(3), Cout = w.dim(0), kh = w.dim(2), kw = w.dim(3), Wo = y.dim(3);
  int64_t P_ = y.dim(2) * Wo, K = Cin * kh * kw, chunk = chunk_of(P_, K);
  std::unique_ptr<CudaBuffer> col;
  if (!pointwise) col = std::make_unique<CudaBuffer>(size_t(K * chunk) * 2, e.stream_owner);
  for (int64_t n = 0; n < B; n++) {
    const char* xin = static_cast<const char*>(P(x)) + n * Cin * H * W * 2;
    char* out = static_cast<char*>(P(y)) + n * Cout * P_ * 2;
    if (pointwise) {
      e.lt.gemm(P(w), K, 0, xin, P_, 0, false, out, P_, 0, Cout, P_, K, 1, 1.f, false, wide, e.stream);
      continue;
    }
    for (int64_t p0 = 0; p0 < P_; p0 += chunk) {
      int64_t pc = std::min(chunk, P_ - p0);
      im2col(xin, col->ptr, Cin, H, W, kh, kw, stride, pad, Wo, p0, pc, e.stream);
      LAUNCHED("im2col");
      e.lt.gemm(P(w), K, 0, col->ptr, pc, 0, false, out + p0 * 2, P_, 0, Cout, pc, K, 1, 1.f, false, wide, e.stream);
    }
  }
  if (bias || residual) {
    conv_epilogue(P(y), opt(bias), opt(residual), B, Cout, P_, false, wide, e.stream);
    LAUNCHED("conv bias");
  }
}

}  // namespace

void convolve(const ConvEngine& e, const Tensor& x, const Tensor& w, const Tensor* bias, int stride, int pad, const Tensor* residual,
              const Tensor& y, bool wide) {
  if (through_cudnn(e, x, w, bias, stride, pad, residual, y, wide)) return;
  bool pointwise = w.dim(2) == 1 && w.dim(3) == 1 && stride == 1 && pad == 0;
  if (nhwc(x)) im2col_nhwc_gemm(e, x, w, bias, stride, pad, residual, y, wide, pointwise);
  else im2col_nchw_gemm(e, x, w, bias, stride, pad, residual, y, wide, pointwise);
}

}  // namespace pg25::cuda
