#include "blocks.h"

namespace pg25 {

Conv Conv::make(Params& p, const std::string& name, int64_t out, int64_t in, int64_t k, int stride) {
  Conv c;
  c.w = p.conv_weight(name + ".weight", {out, in, k, k});
  c.b = p.get(name + ".bias", {out});
  c.stride = stride;
  c.pad = int(k / 2);
  return c;
}

Linear Linear::make(Params& p, const std::string& name, int64_t out, int64_t in, bool bias) {
  Linear l;
  l.w = p.linear_weight(name + ".weight", out, in);
  l.has_bias = bias;
  if (bias) l.b = p.get(name + ".bias", {out});
  return l;
}

Norm Norm::make(Params& p, const std::string& name, int64_t channels) {
  return Norm{p.get(name + ".weight", {channels}), p.get(name + ".bias", {channels})};
}

ResnetBlock ResnetBlock::make(Params& p, const std::string& name, int64_t in, int64_t out, int64_t temb, int groups, float eps) {
  ResnetBlock r;
  r.groups = groups;
  r.eps = eps;
  r.norm1 = Norm::make(p, name + ".norm1", in);
  r.conv1 = Conv::make(p, name + ".conv1", out, in, 3);
  if (temb > 0) r.time_emb_proj = Linear::make(p, name + ".time_emb_proj", out, temb);
  r.norm2 = Norm::make(p, name + ".norm2", out);
  r.conv2 = Conv::make(p, name + ".conv2", out, out, 3);
  if (in != out) r.shortcut = Conv::make(p, name + ".conv_shortcut", out, in, 1);
  return r;
}

Tensor ResnetBlock::operator()(Backend& be, Tensor x, const Tensor* temb_act) const {
  // The skip path first: with a shortcut convolution x is not needed after norm1, which may then
  // overwrite it (a VAE decoder's widest block holds one full-resolution tensor fewer).
  Tensor skip = shortcut ? (*shortcut)(be, x) : x;
  Tensor h = be.group_norm(std::move(x), norm1.w, norm1.b, groups, eps, true);
  h = conv1(be, h);
  // The time embedding is added to conv1's output inside norm2's passes (diffusers adds it just before).
  Tensor t;
  if (time_emb_proj && temb_act) t = (*time_emb_proj)(be, *temb_act);
  h = be.group_norm(std::move(h), norm2.w, norm2.b, groups, eps, true, t.defined() ? &t : nullptr);
  return conv2(be, h, &skip);
}

Attention Attention::make(Params& p, const std::string& name, int64_t dim, int64_t context_dim, int heads, bool qkv_bias) {
  Attention a;
  a.heads = heads;
  a.q = Linear::make(p, name + ".to_q", dim, dim, qkv_bias);
  a.k = Linear::make(p, name + ".to_k", dim, context_dim, qkv_bias);
  a.v = Linear::make(p, name + ".to_v", dim, context_dim, qkv_bias);
  a.out = Linear::make(p, name + ".to_out.0", dim, dim, true);
  return a;
}

Attention Attention::make_self(Params& p, const std::string& name, int64_t dim, int heads) {
  std::vector<Tensor> w = p.linear_weights({name + ".to_q.weight", name + ".to_k.weight", name + ".to_v.weight"}, dim, dim);
  Attention a;
  a.heads = heads;
  a.q = Linear{w[0], {}, false};
  a.k = Linear{w[1], {}, false};
  a.v = Linear{w[2], {}, false};
  a.out = Linear::make(p, name + ".to_out.0", dim, dim, true);
  return a;
}

Tensor Attention::operator()(Backend& be, const Tensor& x, const Tensor* residual) const {
  if (q.has_bias) return attend(be, x, k(be, x), v(be, x), residual);
  std::vector<Tensor> qkv = be.linears(x, {q.w, k.w, v.w});
  return out(be, be.attention(qkv[0], qkv[1], qkv[2], heads, false), residual);
}

Tensor Attention::attend(Backend& be, const Tensor& x, const Tensor& keys, const Tensor& values, const Tensor* residual) const {
  return out(be, be.attention(q(be, x), keys, values, heads, false), residual);
}

TransformerBlock TransformerBlock::make(Params& p, const std::string& name, int64_t dim, int64_t context_dim, int heads) {
  TransformerBlock t;
  t.norm1 = Norm::make(p, name + ".norm1", dim);
  t.attn1 = Attention::make_self(p, name + ".attn1", dim, heads);
  t.norm2 = Norm::make(p, name + ".norm2", dim);
  t.attn2 = Attention::make(p, name + ".attn2", dim, context_dim, heads, false);
  t.norm3 = Norm::make(p, name + ".norm3", dim);
  t.ff_in = Linear::make(p, name + ".ff.net.0.proj", dim * 8, dim);  // GEGLU: 2 x (4 x dim)
  t.ff_out = Linear::make(p, name + ".ff.net.2", dim, dim * 4);
  return t;
}

Tensor TransformerBlock::operator()(Backend& be, const Tensor& x, const Tensor& keys, const Tensor& values) const {
  constexpr float kEps = 1e-5f;  // nn.LayerNorm default in BasicTransformerBlock
  Tensor h = attn1(be, be.layer_norm(x, norm1.w, norm1.b, kEps), &x);
  h = attn2.attend(be, be.layer_norm(h, norm2.w, norm2.b, kEps), keys, values, &h);
  return ff_out(be, be.geglu(ff_in(be, be.layer_norm(h, norm3.w, norm3.b, kEps))), &h);
}

SpatialTransformer SpatialTransformer::make(Params& p, const std::string& name, int64_t channels, int64_t context_dim, int heads,
                                            int64_t layers, int groups) {
  SpatialTransformer s;
  s.groups = groups;
  s.norm = Norm::make(p, name + ".norm", channels);
  s.proj_in = Linear::make(p, name + ".proj_in", channels, channels);
  for (int64_t i = 0; i < layers; i++)
    s.blocks.push_back(TransformerBlock::make(p, join(name + ".transformer_blocks", i), channels, context_dim, heads));
  s.proj_out = Linear::make(p, name + ".proj_out", channels, channels);
  return s;
}

void SpatialTransformer::project_context(Backend& be, const Tensor& context, std::vector<Tensor>& kv) const {
  for (const auto& b : blocks) {
    kv.push_back(b.attn2.k(be, context));
    kv.push_back(b.attn2.v(be, context));
  }
}

Tensor SpatialTransformer::operator()(Backend& be, const Tensor& x, const Tensor* kv) const {
  int64_t H = x.dim(2), W = x.dim(3);
  // Transformer2DModel's GroupNorm uses eps 1e-6 whatever the UNet's norm_eps.
  Tensor h = be.image_to_tokens(be.group_norm(x, norm.w, norm.b, groups, 1e-6f, false));
  h = proj_in(be, h);
  for (const auto& b : blocks) {
    h = b(be, h, kv[0], kv[1]);
    kv += 2;
  }
  // The skip connection as proj_out's residual: on NHWC images x's tokens are a view, so it costs no pass.
  Tensor skip = be.image_to_tokens(x);
  return be.tokens_to_image(proj_out(be, h, &skip), H, W);
}

}  // namespace pg25
