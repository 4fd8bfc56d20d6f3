// The emulated cuDNN's engines: what each offers, and the execution of a finalized graph on the CPU.
//
// Two engines: 0 stands for a tensor-core kernel (channels multiples of 8; it stages the filter as
// float32 in its workspace) and 1 for a generic one (no workspace). Heuristics mode A offers both,
// FALLBACK only 1. PG25_EMU_CUDNN=conv-only offers no engine for graphs with pointwise ops, =none no
// engine at all (=missing makes the library absent: emu/libraries.cc).
#include <cstdlib>
#include <cstring>

#include "../../cpu/threadpool.h"
#include "cudnn_graph.h"
#include "include/cuda_bf16.h"
#include "include/cuda_fp16.h"
#include "../../platform/env.h"

namespace pg25::emu::dnn {
namespace {

float load(const void* p, int32_t t, int64_t i) {
  if (t == kFloat) return static_cast<const float*>(p)[i];
  if (t == kHalf) return float(static_cast<const __half*>(p)[i]);
  return float(static_cast<const __nv_bfloat16*>(p)[i]);
}
void store(void* p, int32_t t, int64_t i, float v) {
  if (t == kFloat) static_cast<float*>(p)[i] = v;
  else if (t == kHalf) static_cast<__half*>(p)[i] = __half(v);
  else static_cast<__nv_bfloat16*>(p)[i] = __nv_bfloat16(v);
}
float round_to(int32_t t, float v) {
  if (t == kHalf) return float(__half(v));
  if (t == kBf16) return float(__nv_bfloat16(v));
  return v;
}

const Node& conv_node(const Graph& g) { return g.nodes[0]; }

}  // namespace

size_t elem_size(int32_t t) { return t == kFloat ? 4 : 2; }

// The engines heuristics offer for a graph (the pattern we emulate: one convolution, then adds).
std::vector<int64_t> engines_for(const Graph& g, int32_t mode) {
  const char* env = platform::env("PG25_EMU_CUDNN");
  std::string limit = env ? env : "";
  int convs = 0;
  for (const Node& n : g.nodes) convs += n.conv;
  if (convs != 1 || !g.nodes[0].conv || limit == "none" || (limit == "conv-only" && g.nodes.size() > 1)) return {};
  if (mode == 2) return {1};
  return {0, 1};
}

// Engine 0 stages the filter in its workspace as float32, and takes only channel counts that are multiples of 8.
int64_t engine_workspace(const Graph& g, int64_t engine) {
  if (engine != 0) return 0;
  const TensorInfo& w = g.tensors[size_t(conv_node(g).other)];
  return w.dims[0] * w.dims[1] * w.dims[2] * w.dims[3] * 4;
}
bool engine_supports(const Graph& g, int64_t engine) {
  if (engine != 0) return true;
  const TensorInfo& w = g.tensors[size_t(conv_node(g).other)];
  return w.dims[0] % 8 == 0 && w.dims[1] % 8 == 0;
}

int64_t extent(const TensorInfo& t) {
  int64_t e = 1;
  for (int i = 0; i < 4; i++) e += (t.dims[i] - 1) * t.strides[i];
  return e;
}

// Runs the graph: values of each tensor as dense NCHW float32 (inputs read through their strides,
// virtual ones rounded to their declared type), the output written through its strides.
std::string run_graph(const Graph& g, int64_t engine, const std::vector<const void*>& ptr, void* workspace) {
  std::vector<std::vector<float>> val(g.tensors.size());
  auto numel = [](const TensorInfo& t) { return t.dims[0] * t.dims[1] * t.dims[2] * t.dims[3]; };
  auto at = [](const TensorInfo& t, int64_t i) {  // dense NCHW index -> strided element
    int64_t w = i % t.dims[3], h = i / t.dims[3] % t.dims[2], c = i / (t.dims[3] * t.dims[2]) % t.dims[1],
            n = i / (t.dims[3] * t.dims[2] * t.dims[1]);
    return n * t.strides[0] + c * t.strides[1] + h * t.strides[2] + w * t.strides[3];
  };
  auto input = [&](int k) -> const std::vector<float>& {
    std::vector<float>& v = val[size_t(k)];
    const TensorInfo& t = g.tensors[size_t(k)];
    if (v.empty() && !t.is_virtual) {
      v.resize(size_t(numel(t)));
      for (int64_t i = 0; i < numel(t); i++) v[size_t(i)] = load(ptr[size_t(k)], t.type, at(t, i));
    }
    return v;
  };
  for (const Node& n : g.nodes) {
    const TensorInfo& yt = g.tensors[size_t(n.out)];
    std::vector<float> y(size_t(numel(yt)));
    if (n.conv) {
      const TensorInfo &xt = g.tensors[size_t(n.in)], &wt = g.tensors[size_t(n.other)];
      const std::vector<float>& x = input(n.in);
      const float* w = input(n.other).data();
      if (engine == 0) {  // through the workspace, as a staging kernel would
        std::memcpy(workspace, w, size_t(numel(wt)) * 4);
        w = static_cast<const float*>(workspace);
      }
      int64_t N = xt.dims[0], C = xt.dims[1], H = xt.dims[2], W = xt.dims[3], K = wt.dims[0], R = wt.dims[2], S = wt.dims[3],
              Ho = yt.dims[2], Wo = yt.dims[3];
      cpu::parallel_for(N * K, 1, [&](int64_t b, int64_t e) {
        for (int64_t nk = b; nk < e; nk++) {
          int64_t in = nk / K, k = nk % K;
          float* out = &y[size_t(nk * Ho * Wo)];
          for (int64_t c = 0; c < C; c++)
            for (int64_t r = 0; r < R; r++)
              for (int64_t s = 0; s < S; s++) {
                float wv = w[((k * C + c) * R + r) * S + s];
                for (int64_t oh = 0; oh < Ho; oh++) {
                  int64_t ih = oh * n.stride[0] - n.pre[0] + r * n.dil[0];
                  if (ih < 0 || ih >= H) continue;
                  const float* row = &x[size_t(((in * C + c) * H + ih) * W)];
                  for (int64_t ow = 0; ow < Wo; ow++) {
                    int64_t iw = ow * n.stride[1] - n.pre[1] + s * n.dil[1];
                    if (iw >= 0 && iw < W) out[oh * Wo + ow] += wv * row[iw];
                  }
                }
              }
          for (int64_t i = 0; i < Ho * Wo; i++) out[i] *= n.alpha1;
        }
      });
    } else {
      const TensorInfo &xt = g.tensors[size_t(n.in)], &bt = g.tensors[size_t(n.other)];
      const std::vector<float>&x = input(n.in), &b = input(n.other);
      auto bcast = [&](const TensorInfo& t, int64_t i) {
        int64_t idx = 0, rest = i;
        int64_t coord[4];
        for (int d = 3; d >= 0; d--) coord[d] = rest % yt.dims[d], rest /= yt.dims[d];
        for (int d = 0; d < 4; d++) idx = idx * t.dims[d] + (t.dims[d] == 1 ? 0 : coord[d]);
        return idx;
      };
      for (int64_t i = 0; i < numel(yt); i++) y[size_t(i)] = n.alpha1 * x[size_t(bcast(xt, i))] + n.alpha2 * b[size_t(bcast(bt, i))];
    }
    if (yt.is_virtual) {
      for (float& v : y) v = round_to(yt.type, v);
      val[size_t(n.out)] = std::move(y);
    } else {
      for (int64_t i = 0; i < numel(yt); i++) store(const_cast<void*>(ptr[size_t(n.out)]), yt.type, at(yt, i), y[size_t(i)]);
      val[size_t(n.out)] = std::move(y);
    }
  }
  return std::string();
}

}  // namespace pg25::emu::dnn
