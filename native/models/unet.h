// The SDXL UNet2DConditionModel (diffusers), built from its config.json: DownBlock2D,
// CrossAttnDownBlock2D, UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D, UpBlock2D, text_time added
// conditioning, per-block transformer depth and head counts.
#pragma once
#include <memory>
#include <mutex>
#include <vector>

#include "../core/config.h"
#include "blocks.h"
#include "cancel.h"

namespace pg25 {

class UNet {
 public:
  UNet(const Config& cfg, Params& p);

  // sample [B, C, h, w], or [B / k, C, h, w] taken k times over (guidance's halves share one latent);
  // timestep: the value fed to the time embedding (0.25 ln sigma for EDM); context [B, L,
  // cross_attention_dim]; text_embeds [B, E]; time_ids: B x n_time_ids host values. Returns [B, ...].
  // `cancel`, when set, stops the pass between blocks with ABORT_ERR.
  Tensor forward(Backend& be, const Tensor& sample, float timestep, const Tensor& context, const Tensor& text_embeds,
                 const std::vector<float>& time_ids, const CancelFlag* cancel = nullptr) const;

  int64_t in_channels() const { return in_channels_; }
  int64_t sample_size() const { return sample_size_; }
  int64_t cross_attention_dim() const { return cross_dim_; }
  int64_t text_embeds_dim() const { return text_embeds_dim_; }
  int64_t time_ids_count() const { return n_time_ids_; }

 private:
  struct Down {
    std::vector<ResnetBlock> resnets;
    std::vector<SpatialTransformer> attentions;
    std::optional<Conv> downsample;
  };
  struct Up {
    std::vector<ResnetBlock> resnets;
    std::vector<SpatialTransformer> attentions;
    std::optional<Conv> upsample;
  };
  // Every transformer block's cross-attention keys and values of `context`, in the order body reads them.
  std::vector<Tensor> project_context(Backend& be, const Tensor& context) const;
  // The pass on device tensors alone (what a backend may record and replay): temb_in and time_embeds
  // are the sinusoidal embeddings of the timestep and of the time ids; kv is project_context's.
  Tensor body(Backend& be, const Tensor& sample, const Tensor& temb_in, const Tensor& time_embeds, const Tensor& text_embeds,
              const Tensor* kv, const CancelFlag* cancel) const;

  int64_t in_channels_, out_channels_, sample_size_, cross_dim_, time_dim_, add_time_dim_, text_embeds_dim_, n_time_ids_;
  int groups_;
  float eps_;
  bool flip_sin_to_cos_;
  double freq_shift_;
  Conv conv_in_, conv_out_;
  Linear time_1_, time_2_, add_1_, add_2_;
  Norm norm_out_;
  std::vector<Down> down_;
  ResnetBlock mid_res0_, mid_res1_;
  SpatialTransformer mid_attn_;
  std::vector<Up> up_;
  uint64_t id_;  // names this model in the keys of what it derives from conditioning tensors
  mutable std::once_flag recorder_once_;
  mutable std::unique_ptr<Recorder> recorder_;  // the backend's recordings of body, per input shapes
};

// diffusers' get_timestep_embedding, in float32 as torch computes it.
std::vector<float> timestep_embedding(const std::vector<float>& t, int64_t dim, bool flip_sin_to_cos, double freq_shift);

}  // namespace pg25
