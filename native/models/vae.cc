#include "vae.h"

#include <algorithm>
#include <cmath>

#include "../core/error.h"

namespace pg25 {

static constexpr float kVaeEps = 1e-6f;  // diffusers builds every VAE norm with eps 1e-6

// The config checks both halves of the autoencoder share.
struct VaeShape {
  std::vector<int64_t> ch;
  int64_t latent_channels, layers;
  int groups;
  Storage storage;  // force_upcast: the VAE's activations overflow fp16
};

static VaeShape read_vae_shape(const Config& cfg) {
  cfg.require_string("act_fn", "silu");
  cfg.require_bool("mid_block_add_attention", true);
  cfg.require_bool("use_quant_conv", true);
  cfg.require_bool("use_post_quant_conv", true);
  cfg.require_null("shift_factor");
  VaeShape s;
  s.ch = cfg.integers("block_out_channels", 1, 1 << 14);
  for (const auto& t : cfg.strings("up_block_types"))
    if (t != "UpDecoderBlock2D") cfg.refuse("up_block_types", "entry \"" + t + "\" is not supported (UpDecoderBlock2D)");
  for (const auto& t : cfg.strings("down_block_types"))
    if (t != "DownEncoderBlock2D") cfg.refuse("down_block_types", "entry \"" + t + "\" is not supported (DownEncoderBlock2D)");
  if (cfg.strings("up_block_types").size() != s.ch.size()) cfg.bad("up_block_types", "must have one entry per block_out_channels entry");
  if (cfg.strings("down_block_types").size() != s.ch.size())
    cfg.bad("down_block_types", "must have one entry per block_out_channels entry");
  s.latent_channels = cfg.integer("latent_channels", 1, 64);
  s.storage = cfg.boolean_or("force_upcast", false) ? Storage::Wide : Storage::Default;
  s.groups = int(cfg.integer_or("norm_num_groups", 32, 1, 1024));
  s.layers = cfg.integer_or("layers_per_block", 2, 1, 64);
  for (int64_t c : s.ch)
    if (c % s.groups != 0) cfg.bad("block_out_channels", "entry " + std::to_string(c) + " is not divisible by norm_num_groups");
  if (cfg.integer_or("in_channels", 3, 1, 16) != 3) cfg.refuse("in_channels", "must be 3 (RGB)");
  if (cfg.integer_or("out_channels", 3, 1, 16) != 3) cfg.refuse("out_channels", "must be 3 (RGB)");
  return s;
}

VaeEncoder::VaeEncoder(const Config& cfg, Params& p) {
  VaeShape s = read_vae_shape(cfg);
  storage_ = s.storage;
  p.set_storage(storage_);
  latent_channels_ = s.latent_channels;
  groups_ = s.groups;
  size_t nb = s.ch.size();
  conv_in_ = Conv::make(p, "encoder.conv_in", s.ch[0], 3, 3);
  int64_t out_c = s.ch[0];
  for (size_t i = 0; i < nb; i++) {
    int64_t in_c = out_c;
    out_c = s.ch[i];
    std::string name = join("encoder.down_blocks", int64_t(i));
    Down d;
    for (int64_t j = 0; j < s.layers; j++)
      d.resnets.push_back(ResnetBlock::make(p, join(name + ".resnets", j), j == 0 ? in_c : out_c, out_c, 0, groups_, kVaeEps));
    if (i + 1 < nb) {
      d.downsample = Conv::make(p, name + ".downsamplers.0.conv", out_c, out_c, 3, 2);
      d.downsample->pad = 0;
    }
    down_.push_back(std::move(d));
  }
  int64_t top = s.ch[nb - 1];
  mid_res0_ = ResnetBlock::make(p, "encoder.mid_block.resnets.0", top, top, 0, groups_, kVaeEps);
  mid_norm_ = Norm::make(p, "encoder.mid_block.attentions.0.group_norm", top);
  mid_attn_ = Attention::make(p, "encoder.mid_block.attentions.0", top, top, 1, true);
  mid_res1_ = ResnetBlock::make(p, "encoder.mid_block.resnets.1", top, top, 0, groups_, kVaeEps);
  norm_out_ = Norm::make(p, "encoder.conv_norm_out", top);
  conv_out_ = Conv::make(p, "encoder.conv_out", 2 * latent_channels_, top, 3);
  quant_ = Conv::make(p, "quant_conv", 2 * latent_channels_, 2 * latent_channels_, 1);
}

VaeEncoder::Output VaeEncoder::encode(Backend& be, const Tensor& image, const CancelFlag* cancel) const {
  if (image.rank() != 4 || image.dim(1) != 3)
    throw Error(Code::InvalidArgument, "vae encoder: image must be [B, 3, H, W], got " + shape_str(image.shape));
  Tensor h = conv_in_(be, be.to_layout(be.cast(image, storage_), be.image_layout()));
  for (const Down& d : down_) {
    for (const auto& r : d.resnets) {
      check_cancel(cancel);
      h = r(be, h, nullptr);
    }
    if (d.downsample) h = (*d.downsample)(be, be.pad2d(h, 0, 1, 0, 1));
  }
  check_cancel(cancel);
  h = mid_res0_(be, h, nullptr);
  {
    int64_t H = h.dim(2), W = h.dim(3);
    Tensor a = be.image_to_tokens(be.group_norm(h, mid_norm_.w, mid_norm_.b, groups_, kVaeEps, false));
    Tensor skip = be.image_to_tokens(h);  // the residual in the output projection (a view on NHWC images)
    h = be.tokens_to_image(mid_attn_(be, a, &skip), H, W);
  }
  h = mid_res1_(be, h, nullptr);
  h = be.group_norm(h, norm_out_.w, norm_out_.b, groups_, kVaeEps, true);
  Tensor moments = be.to_layout(quant_(be, conv_out_(be, h)), Layout::NCHW);
  // moments = [mean | logvar] on the channel axis; std = exp(0.5 * clamp(logvar, -30, 20)).
  int64_t B = moments.dim(0);
  Tensor mean, logvar;
  std::vector<float> host(size_t(moments.numel()));
  be.to_host(moments, host.data());
  int64_t per = moments.numel() / B, half = per / 2;
  std::vector<float> m(size_t(B * half)), sd(size_t(B * half));
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < half; i++) {
      m[size_t(b * half + i)] = host[size_t(b * per + i)];
      float lv = std::min(20.f, std::max(-30.f, host[size_t(b * per + half + i)]));
      sd[size_t(b * half + i)] = float(std::exp(double(0.5f * lv)));  // double: the same bits on every libm
    }
  Shape s{B, latent_channels_, moments.dim(2), moments.dim(3)};
  return {be.from_host(m.data(), s), be.from_host(sd.data(), s)};
}

VaeDecoder::VaeDecoder(const Config& cfg, Params& p) {
  VaeShape s = read_vae_shape(cfg);
  storage_ = s.storage;
  p.set_storage(storage_);
  const std::vector<int64_t>& ch = s.ch;
  size_t nb = ch.size();
  latent_channels_ = s.latent_channels;
  groups_ = s.groups;
  int64_t layers = s.layers;
  scaling_factor_ = cfg.number_or("scaling_factor", 0.18215);
  if (!(scaling_factor_ > 0)) cfg.bad("scaling_factor", "must be positive");
  if (cfg.has("latents_mean") != cfg.has("latents_std"))
    cfg.bad(cfg.has("latents_mean") ? "latents_std" : "latents_mean", "is missing while its pair is set");
  if (cfg.has("latents_mean")) {
    for (double v : cfg.numbers("latents_mean")) mean_.push_back(float(v));
    for (double v : cfg.numbers("latents_std")) std_.push_back(float(v));
    if (int64_t(mean_.size()) != latent_channels_) cfg.bad("latents_mean", "must have latent_channels entries");
    if (int64_t(std_.size()) != latent_channels_) cfg.bad("latents_std", "must have latent_channels entries");
    for (float v : std_)
      if (!(v > 0)) cfg.bad("latents_std", "entries must be positive");
  }

  post_quant_ = Conv::make(p, "post_quant_conv", latent_channels_, latent_channels_, 1);
  int64_t top = ch[nb - 1];
  conv_in_ = Conv::make(p, "decoder.conv_in", top, latent_channels_, 3);
  mid_res0_ = ResnetBlock::make(p, "decoder.mid_block.resnets.0", top, top, 0, groups_, kVaeEps);
  mid_attn_.norm = Norm::make(p, "decoder.mid_block.attentions.0.group_norm", top);
  mid_attn_.attn = Attention::make(p, "decoder.mid_block.attentions.0", top, top, 1, true);
  mid_res1_ = ResnetBlock::make(p, "decoder.mid_block.resnets.1", top, top, 0, groups_, kVaeEps);
  int64_t out_c = top;
  for (size_t i = 0; i < nb; i++) {
    int64_t prev = out_c;
    out_c = ch[nb - 1 - i];
    std::string name = join("decoder.up_blocks", int64_t(i));
    Up u;
    for (int64_t j = 0; j < layers + 1; j++)
      u.resnets.push_back(ResnetBlock::make(p, join(name + ".resnets", j), j == 0 ? prev : out_c, out_c, 0, groups_, kVaeEps));
    if (i + 1 < nb) {
      u.upsample = Conv::make(p, name + ".upsamplers.0.conv", out_c, out_c, 3);
      n_up_++;
    }
    up_.push_back(std::move(u));
  }
  norm_out_ = Norm::make(p, "decoder.conv_norm_out", ch[0]);
  conv_out_ = Conv::make(p, "decoder.conv_out", 3, ch[0], 3);
}

static void check_latents(const Tensor& latents, int64_t channels) {
  if (latents.rank() != 4 || latents.dim(1) != channels)
    throw Error(Code::InvalidArgument, "vae: latents must be [B, " + std::to_string(channels) + ", h, w], got " + shape_str(latents.shape));
}

Tensor VaeDecoder::unscale(Backend& be, const Tensor& latents) const {
  check_latents(latents, latent_channels_);
  std::vector<float> scale(static_cast<size_t>(latent_channels_)), shift(static_cast<size_t>(latent_channels_), 0.f);
  for (int64_t c = 0; c < latent_channels_; c++) {
    scale[size_t(c)] = mean_.empty() ? float(1.0 / scaling_factor_) : float(std_[size_t(c)] / scaling_factor_);
    if (!mean_.empty()) shift[size_t(c)] = mean_[size_t(c)];
  }
  return be.channel_affine(latents, scale, shift);
}

Tensor VaeDecoder::decode(Backend& be, const Tensor& z, const CancelFlag* cancel) const {
  check_latents(z, latent_channels_);
  Tensor h = post_quant_(be, be.to_layout(be.cast(z, storage_), be.image_layout()));
  h = conv_in_(be, h);
  check_cancel(cancel);
  h = mid_res0_(be, std::move(h), nullptr);
  {
    int64_t H = h.dim(2), W = h.dim(3);
    Tensor a = be.image_to_tokens(be.group_norm(h, mid_attn_.norm.w, mid_attn_.norm.b, groups_, kVaeEps, false));
    Tensor skip = be.image_to_tokens(h);  // the residual in the output projection (a view on NHWC images)
    h = be.tokens_to_image(mid_attn_.attn(be, a, &skip), H, W);
  }
  h = mid_res1_(be, std::move(h), nullptr);
  // Each tensor is moved into its last reader, so that it is freed (or overwritten) as soon as it is read.
  for (const Up& u : up_) {
    for (const auto& r : u.resnets) {
      check_cancel(cancel);
      h = r(be, std::move(h), nullptr);
    }
    if (u.upsample) h = u.upsample->upsampled(be, h);
  }
  h = be.group_norm(std::move(h), norm_out_.w, norm_out_.b, groups_, kVaeEps, true);
  return be.to_layout(conv_out_(be, h), Layout::NCHW);
}

}  // namespace pg25
