#include "unet.h"

#include <atomic>
#include <cmath>

#include "../core/error.h"
#include "lora.h"

namespace pg25 {

std::vector<float> timestep_embedding(const std::vector<float>& t, int64_t dim, bool flip_sin_to_cos, double freq_shift) {
  int64_t half = dim / 2;
  std::vector<float> freq(static_cast<size_t>(half));
  // float32 arguments as diffusers computes them; exp, sin and cos in double and rounded once, so the
  // result does not depend on the platform's float libm (glibc and MinGW's differ in the last bit).
  const float neg_log = float(-std::log(10000.0));
  for (int64_t i = 0; i < half; i++) freq[size_t(i)] = float(std::exp(double((neg_log * float(i)) / float(double(half) - freq_shift))));
  std::vector<float> out(t.size() * size_t(dim), 0.f);
  for (size_t b = 0; b < t.size(); b++) {
    float* row = out.data() + b * size_t(dim);
    for (int64_t i = 0; i < half; i++) {
      float arg = t[b] * freq[size_t(i)];
      float s = float(std::sin(double(arg))), c = float(std::cos(double(arg)));
      row[flip_sin_to_cos ? half + i : i] = s;
      row[flip_sin_to_cos ? i : half + i] = c;
    }
  }
  return out;
}

UNet::UNet(const Config& cfg, Params& p) {
  static std::atomic<uint64_t> models{0};
  id_ = ++models;
  // What this graph implements; anything else is refused by name.
  cfg.require_string("act_fn", "silu");
  cfg.require_string("addition_embed_type", "text_time", false);
  cfg.require_string("attention_type", "default");
  cfg.require_bool("center_input_sample", false);
  cfg.require_null("class_embed_type");
  cfg.require_bool("class_embeddings_concat", false);
  cfg.require_number("conv_in_kernel", 3);
  cfg.require_number("conv_out_kernel", 3);
  cfg.require_null("cross_attention_norm");
  cfg.require_number("downsample_padding", 1);
  cfg.require_bool("dual_cross_attention", false);
  cfg.require_null("encoder_hid_dim");
  cfg.require_null("encoder_hid_dim_type");
  cfg.require_string("mid_block_type", "UNetMidBlock2DCrossAttn");
  cfg.require_number("mid_block_scale_factor", 1);
  cfg.require_null("mid_block_only_cross_attention");
  cfg.require_null("num_class_embeds");
  cfg.require_bool("only_cross_attention", false);
  cfg.require_number("resnet_out_scale_factor", 1);
  cfg.require_bool("resnet_skip_time_act", false);
  cfg.require_string("resnet_time_scale_shift", "default");
  cfg.require_null("reverse_transformer_layers_per_block");
  cfg.require_null("time_cond_proj_dim");
  cfg.require_null("time_embedding_act_fn");
  cfg.require_null("time_embedding_dim");
  cfg.require_string("time_embedding_type", "positional");
  cfg.require_null("timestep_post_act");
  cfg.require_bool("use_linear_projection", true);

  std::vector<int64_t> ch = cfg.integers("block_out_channels", 1, 1 << 16);
  size_t nb = ch.size();
  std::vector<std::string> down_types = cfg.strings("down_block_types");
  std::vector<std::string> up_types = cfg.strings("up_block_types");
  if (down_types.size() != nb) cfg.bad("down_block_types", "must have one entry per block_out_channels entry");
  if (up_types.size() != nb) cfg.bad("up_block_types", "must have one entry per block_out_channels entry");
  std::vector<bool> cross(nb);
  for (size_t i = 0; i < nb; i++) {
    if (down_types[i] == "CrossAttnDownBlock2D") cross[i] = true;
    else if (down_types[i] == "DownBlock2D") cross[i] = false;
    else cfg.refuse("down_block_types", "entry \"" + down_types[i] + "\" is not supported (DownBlock2D, CrossAttnDownBlock2D)");
    const std::string& u = up_types[nb - 1 - i];
    if (u != (cross[i] ? "CrossAttnUpBlock2D" : "UpBlock2D"))
      cfg.refuse("up_block_types", "entry \"" + u + "\" does not mirror down block \"" + down_types[i] + "\"");
  }
  in_channels_ = cfg.integer("in_channels", 1, 64);
  out_channels_ = cfg.integer("out_channels", 1, 64);
  sample_size_ = cfg.integer_or("sample_size", 128, 1, 1 << 14);
  groups_ = int(cfg.integer_or("norm_num_groups", 32, 1, 1024));
  eps_ = float(cfg.number_or("norm_eps", 1e-5));
  flip_sin_to_cos_ = cfg.boolean_or("flip_sin_to_cos", true);
  freq_shift_ = cfg.number_or("freq_shift", 0);
  cross_dim_ = cfg.integer("cross_attention_dim", 1, 1 << 16);
  std::vector<int64_t> layers = cfg.integer_or_list("layers_per_block", nb, 1, 64);
  std::vector<int64_t> tlayers = cfg.integer_or_list("transformer_layers_per_block", nb, 1, 256);
  // diffusers naming quirk: with num_attention_heads null, attention_head_dim is the head count.
  std::vector<int64_t> heads = cfg.has("num_attention_heads") ? cfg.integer_or_list("num_attention_heads", nb, 1, 1024)
                                                              : cfg.integer_or_list("attention_head_dim", nb, 1, 1024);
  for (size_t i = 0; i < nb; i++) {
    if (ch[i] % groups_ != 0)
      cfg.bad("block_out_channels", "entry " + std::to_string(ch[i]) + " is not divisible by norm_num_groups " + std::to_string(groups_));
    if (cross[i] && ch[i] % heads[i] != 0)
      cfg.bad("attention_head_dim", "head count " + std::to_string(heads[i]) + " does not divide " + std::to_string(ch[i]) + " channels");
  }
  if (!cross[nb - 1]) cfg.refuse("down_block_types", "the mid block needs cross-attention in the last block");
  time_dim_ = ch[0] * 4;
  add_time_dim_ = cfg.integer("addition_time_embed_dim", 2, 1 << 14);
  int64_t proj_in_dim = cfg.integer("projection_class_embeddings_input_dim", 1, 1 << 20);
  // text_time: the pooled text embedding plus n time ids, each embedded to addition_time_embed_dim.
  n_time_ids_ = 6;
  text_embeds_dim_ = proj_in_dim - n_time_ids_ * add_time_dim_;
  if (text_embeds_dim_ <= 0)
    cfg.bad("projection_class_embeddings_input_dim", "leaves no room for the pooled text embedding beside 6 time ids");

  conv_in_ = Conv::make(p, "conv_in", ch[0], in_channels_, 3);
  time_1_ = Linear::make(p, "time_embedding.linear_1", time_dim_, ch[0]);
  time_2_ = Linear::make(p, "time_embedding.linear_2", time_dim_, time_dim_);
  add_1_ = Linear::make(p, "add_embedding.linear_1", time_dim_, proj_in_dim);
  add_2_ = Linear::make(p, "add_embedding.linear_2", time_dim_, time_dim_);

  int64_t out_ch = ch[0];
  for (size_t i = 0; i < nb; i++) {
    int64_t in_ch = out_ch;
    out_ch = ch[i];
    std::string name = join("down_blocks", int64_t(i));
    Down d;
    for (int64_t j = 0; j < layers[i]; j++) {
      d.resnets.push_back(ResnetBlock::make(p, join(name + ".resnets", j), j == 0 ? in_ch : out_ch, out_ch, time_dim_, groups_, eps_));
      if (cross[i])
        d.attentions.push_back(
            SpatialTransformer::make(p, join(name + ".attentions", j), out_ch, cross_dim_, int(heads[i]), tlayers[i], groups_));
    }
    if (i + 1 < nb) d.downsample = Conv::make(p, name + ".downsamplers.0.conv", out_ch, out_ch, 3, 2);
    down_.push_back(std::move(d));
  }
  int64_t top = ch[nb - 1];
  mid_res0_ = ResnetBlock::make(p, "mid_block.resnets.0", top, top, time_dim_, groups_, eps_);
  mid_attn_ = SpatialTransformer::make(p, "mid_block.attentions.0", top, cross_dim_, int(heads[nb - 1]), tlayers[nb - 1], groups_);
  mid_res1_ = ResnetBlock::make(p, "mid_block.resnets.1", top, top, time_dim_, groups_, eps_);

  int64_t prev_out = top;
  for (size_t i = 0; i < nb; i++) {
    size_t r = nb - 1 - i;  // the mirrored down block
    int64_t out_c = ch[r], in_c = ch[r == 0 ? 0 : r - 1];
    std::string name = join("up_blocks", int64_t(i));
    Up u;
    int64_t n = layers[r] + 1;
    for (int64_t j = 0; j < n; j++) {
      int64_t skip = j == n - 1 ? in_c : out_c;
      int64_t rin = j == 0 ? prev_out : out_c;
      u.resnets.push_back(ResnetBlock::make(p, join(name + ".resnets", j), rin + skip, out_c, time_dim_, groups_, eps_));
      if (cross[r])
        u.attentions.push_back(
            SpatialTransformer::make(p, join(name + ".attentions", j), out_c, cross_dim_, int(heads[r]), tlayers[r], groups_));
    }
    if (i + 1 < nb) u.upsample = Conv::make(p, name + ".upsamplers.0.conv", out_c, out_c, 3);
    up_.push_back(std::move(u));
    prev_out = out_c;
  }
  norm_out_ = Norm::make(p, "conv_norm_out", ch[0]);
  conv_out_ = Conv::make(p, "conv_out", out_channels_, ch[0], 3);
}

Tensor UNet::forward(Backend& be, const Tensor& sample, float timestep, const Tensor& context, const Tensor& text_embeds,
                     const std::vector<float>& time_ids, const CancelFlag* cancel) const {
  auto fail = [](const std::string& what) { return Error(Code::InvalidArgument, "unet: " + what); };
  if (sample.rank() != 4 || sample.dim(1) != in_channels_)
    throw fail("sample must be [B, " + std::to_string(in_channels_) + ", h, w], got " + shape_str(sample.shape));
  // The conditioning's batch is B; the sample's may be B / k, taken k times over (classifier-free
  // guidance: one latent for the unconditional and the conditional halves, with no concatenated copy).
  int64_t B = context.rank() == 3 ? context.dim(0) : sample.dim(0);
  if (B % sample.dim(0))
    throw fail("the sample's batch " + std::to_string(sample.dim(0)) + " does not divide encoder_hidden_states' batch " +
               std::to_string(B));
  if (context.rank() != 3 || context.dim(0) != B || context.dim(2) != cross_dim_)
    throw fail("encoder_hidden_states must be [B, L, " + std::to_string(cross_dim_) + "], got " + shape_str(context.shape));
  if (text_embeds.rank() != 2 || text_embeds.dim(0) != B || text_embeds.dim(1) != text_embeds_dim_)
    throw fail("text_embeds must be [B, " + std::to_string(text_embeds_dim_) + "], got " + shape_str(text_embeds.shape));
  if (int64_t(time_ids.size()) != B * n_time_ids_) throw fail("time_ids must hold " + std::to_string(B * n_time_ids_) + " values");
  check_cancel(cancel);
  // What comes from the host goes up first, so the rest depends on device tensors alone and a backend
  // can record it once and replay it for every step (the timestep changes only these inputs' values).
  std::vector<float> t(size_t(B), timestep);
  std::vector<float> temb = timestep_embedding(t, conv_in_.w.dim(0), flip_sin_to_cos_, freq_shift_);
  std::vector<float> tid = timestep_embedding(time_ids, add_time_dim_, flip_sin_to_cos_, freq_shift_);
  // The conditioning's keys and values for every cross-attention, projected on its first step and kept
  // with it for the others (until it is freed, or a LoRA changes weights).
  std::string key = "unet " + std::to_string(id_) + " lora " + std::to_string(lora_epoch()) + " " + shape_str(context.shape);
  auto kv = memo<std::vector<Tensor>>(context, key, [&] { return project_context(be, context); });
  // The recording's inputs are plain NCHW buffers: a sample in another layout is converted first.
  std::vector<Tensor> in{be.to_layout(sample, Layout::NCHW), be.from_host(temb.data(), {B, conv_in_.w.dim(0)}),
                         be.from_host(tid.data(), {B, n_time_ids_ * add_time_dim_}), text_embeds};
  in.insert(in.end(), kv->begin(), kv->end());
  std::call_once(recorder_once_, [&] { recorder_ = be.make_recorder(); });
  return be.run_recorded(recorder_.get(), in, {B, out_channels_, sample.dim(2), sample.dim(3)},
                         [&](const std::vector<Tensor>& x) { return body(be, x[0], x[1], x[2], x[3], &x[4], cancel); });
}

std::vector<Tensor> UNet::project_context(Backend& be, const Tensor& context) const {
  std::vector<Tensor> kv;
  for (const Down& d : down_)
    for (const SpatialTransformer& t : d.attentions) t.project_context(be, context, kv);
  mid_attn_.project_context(be, context, kv);
  for (const Up& u : up_)
    for (const SpatialTransformer& t : u.attentions) t.project_context(be, context, kv);
  return kv;
}

Tensor UNet::body(Backend& be, const Tensor& sample, const Tensor& temb_in, const Tensor& time_embeds, const Tensor& text_embeds,
                  const Tensor* kv, const CancelFlag* cancel) const {
  // Each transformer takes its blocks' entries of kv, in project_context's order.
  auto attend = [&](const SpatialTransformer& t, const Tensor& x) {
    Tensor y = t(be, x, kv);
    kv += 2 * t.blocks.size();
    return y;
  };
  Tensor emb = time_2_(be, be.silu(time_1_(be, temb_in)));
  Tensor aug = add_2_(be, be.silu(add_1_(be, be.concat(text_embeds, time_embeds, 1))));
  Tensor temb = be.silu(be.add(emb, aug));
  // Images stay in the backend's layout from conv_in to conv_out (NHWC on the GPU); the conversion
  // writes the sample's repeats for guidance.
  Tensor h = conv_in_(be, be.repeat_batch(sample, temb_in.dim(0) / sample.dim(0), be.image_layout()));
  std::vector<Tensor> skips{h};
  for (const Down& d : down_) {
    for (size_t j = 0; j < d.resnets.size(); j++) {
      check_cancel(cancel);
      h = d.resnets[j](be, h, &temb);
      if (!d.attentions.empty()) h = attend(d.attentions[j], h);
      skips.push_back(h);
    }
    if (d.downsample) {
      h = (*d.downsample)(be, h);
      skips.push_back(h);
    }
  }
  check_cancel(cancel);
  h = mid_res0_(be, h, &temb);
  h = attend(mid_attn_, h);
  h = mid_res1_(be, h, &temb);
  for (const Up& u : up_) {
    for (size_t j = 0; j < u.resnets.size(); j++) {
      check_cancel(cancel);
      Tensor skip = skips.back();
      skips.pop_back();
      h = u.resnets[j](be, be.concat(h, skip, 1), &temb);
      if (!u.attentions.empty()) h = attend(u.attentions[j], h);
    }
    if (u.upsample) {
      // Upsample to the size of the next skip, as diffusers does for sizes not divisible by 2^n.
      const Tensor& next = skips.back();
      if (next.dim(2) == 2 * h.dim(2) && next.dim(3) == 2 * h.dim(3)) h = u.upsample->upsampled(be, h);
      else h = (*u.upsample)(be, be.upsample_nearest(h, next.dim(2), next.dim(3)));
    }
  }
  h = be.group_norm(std::move(h), norm_out_.w, norm_out_.b, groups_, eps_, true);
  return be.to_layout(conv_out_(be, h), Layout::NCHW);
}

}  // namespace pg25
