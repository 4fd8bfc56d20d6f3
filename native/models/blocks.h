// Building blocks shared by the UNet and the VAE (diffusers' ResnetBlock2D, Transformer2DModel,
// Downsample2D, Upsample2D), declared through Params and run through a Backend.
#pragma once
#include <optional>
#include <vector>

#include "params.h"

namespace pg25 {

struct Conv {
  Tensor w, b;
  int stride = 1, pad = 1;
  static Conv make(Params& p, const std::string& name, int64_t out, int64_t in, int64_t k, int stride = 1);
  Tensor operator()(Backend& be, const Tensor& x, const Tensor* residual = nullptr) const {
    return be.conv2d(x, w, &b, stride, pad, residual);
  }
  // The convolution over x nearest-upsampled 2x (an Upsample2D; stride 1).
  Tensor upsampled(Backend& be, const Tensor& x) const { return be.upsample2x_conv2d(x, w, &b, pad); }
};

struct Linear {
  Tensor w, b;
  bool has_bias = true;
  static Linear make(Params& p, const std::string& name, int64_t out, int64_t in, bool bias = true);
  Tensor operator()(Backend& be, const Tensor& x, const Tensor* residual = nullptr) const {
    return be.linear(x, w, has_bias ? &b : nullptr, residual);
  }
};

struct Norm {
  Tensor w, b;
  static Norm make(Params& p, const std::string& name, int64_t channels);
};

struct ResnetBlock {
  Norm norm1, norm2;
  Conv conv1, conv2;
  std::optional<Linear> time_emb_proj;
  std::optional<Conv> shortcut;
  int groups;
  float eps;
  static ResnetBlock make(Params& p, const std::string& name, int64_t in, int64_t out, int64_t temb, int groups, float eps);
  // temb_act: silu(time embedding) [B, temb], or undefined for the VAE. A caller that moves in its
  // last reference to x lets the block free it (or normalise over it) once the skip path has read it.
  Tensor operator()(Backend& be, Tensor x, const Tensor* temb_act) const;
};

struct Attention {
  Linear q, k, v, out;
  int heads;
  static Attention make(Params& p, const std::string& name, int64_t dim, int64_t context_dim, int heads, bool qkv_bias);
  // Bias-free self-attention (the UNet's attn1): the query, key and value projections share their
  // input, so their weights are packed (Params::linear_weights) for one batched GEMM.
  static Attention make_self(Params& p, const std::string& name, int64_t dim, int heads);
  // Self-attention over x; `residual` is added to the output projection (the block's skip connection).
  Tensor operator()(Backend& be, const Tensor& x, const Tensor* residual = nullptr) const;
  // x's queries over keys and values already projected: cross-attention's come from the text
  // conditioning, the same at every step of a run, so the UNet projects them once per run.
  Tensor attend(Backend& be, const Tensor& x, const Tensor& keys, const Tensor& values, const Tensor* residual = nullptr) const;
};

struct TransformerBlock {
  Norm norm1, norm2, norm3;
  Attention attn1, attn2;
  Linear ff_in, ff_out;
  static TransformerBlock make(Params& p, const std::string& name, int64_t dim, int64_t context_dim, int heads);
  // keys, values: attn2.k and attn2.v of the conditioning.
  Tensor operator()(Backend& be, const Tensor& x, const Tensor& keys, const Tensor& values) const;
};

// Transformer2DModel with use_linear_projection.
struct SpatialTransformer {
  Norm norm;
  Linear proj_in, proj_out;
  std::vector<TransformerBlock> blocks;
  int groups;
  static SpatialTransformer make(Params& p, const std::string& name, int64_t channels, int64_t context_dim, int heads, int64_t layers,
                                 int groups);
  // Appends each block's cross-attention keys and values of `context` [B, L, context_dim] (two per block).
  void project_context(Backend& be, const Tensor& context, std::vector<Tensor>& kv) const;
  // kv: this transformer's 2 x blocks.size() entries of project_context.
  Tensor operator()(Backend& be, const Tensor& x, const Tensor* kv) const;
};

}  // namespace pg25
