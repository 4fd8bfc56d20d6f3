// The AutoencoderKL decoder (diffusers), with post_quant_conv and the latent statistics
// (latents_mean / latents_std / scaling_factor) that turn UNet latents into decoder input.
#pragma once
#include <vector>

#include "../core/config.h"
#include "blocks.h"
#include "cancel.h"

namespace pg25 {

class VaeDecoder {
 public:
  VaeDecoder(const Config& cfg, Params& p);

  // UNet latents -> VAE latents: latents * latents_std / scaling_factor + latents_mean
  // (or latents / scaling_factor for a VAE without statistics), as the SDXL pipeline does before decoding.
  Tensor unscale(Backend& be, const Tensor& latents) const;
  // vae.decode: VAE latents [B, latent_channels, h, w] -> image [B, 3, 8h, 8w] in about [-1, 1].
  // `cancel`, when set, stops it between blocks with ABORT_ERR.
  Tensor decode(Backend& be, const Tensor& z, const CancelFlag* cancel = nullptr) const;
  int64_t latent_channels() const { return latent_channels_; }
  int64_t scale_factor() const { return int64_t(1) << (n_up_); }
  double scaling_factor() const { return scaling_factor_; }
  const std::vector<float>& latents_mean() const { return mean_; }
  const std::vector<float>& latents_std() const { return std_; }

 private:
  struct MidAttention {
    Norm norm;
    Attention attn;
  };
  struct Up {
    std::vector<ResnetBlock> resnets;
    std::optional<Conv> upsample;
  };
  int64_t latent_channels_;
  Storage storage_;
  int groups_;
  int n_up_ = 0;
  double scaling_factor_;
  std::vector<float> mean_, std_;
  Conv post_quant_, conv_in_, conv_out_;
  ResnetBlock mid_res0_, mid_res1_;
  MidAttention mid_attn_;
  std::vector<Up> up_;
  Norm norm_out_;
};

// The AutoencoderKL encoder and quant_conv: image in [-1, 1] -> the latent distribution (mean, std).
class VaeEncoder {
 public:
  VaeEncoder(const Config& cfg, Params& p);
  struct Output {
    Tensor mean, std;
  };
  Output encode(Backend& be, const Tensor& image, const CancelFlag* cancel = nullptr) const;

 private:
  struct Down {
    std::vector<ResnetBlock> resnets;
    std::optional<Conv> downsample;  // stride 2 after a (0, 1, 0, 1) zero pad, as diffusers' Downsample2D(padding=0)
  };
  int64_t latent_channels_;
  Storage storage_;
  int groups_;
  Conv conv_in_, conv_out_, quant_;
  std::vector<Down> down_;
  ResnetBlock mid_res0_, mid_res1_;
  Norm mid_norm_, norm_out_;
  Attention mid_attn_;
};

}  // namespace pg25
