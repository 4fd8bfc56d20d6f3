#include "registry.h"

#include "../core/config.h"
#include "../core/error.h"

namespace pg25 {

Model build(const ComponentSpec& s, Params& p) {
  Config cfg(s.config_path, s.config_text);
  if (s.kind == "text_encoder") return std::make_unique<ClipTextModel>(s.class_name, cfg, p);
  if (s.kind == "unet") {
    if (s.class_name != "UNet2DConditionModel")
      throw unsupported(s.config_path, "UNet class \"" + s.class_name + "\" is not supported (UNet2DConditionModel)");
    return std::make_unique<UNet>(cfg, p);
  }
  if (s.kind == "vae" || s.kind == "vae_encoder") {
    if (s.class_name != "AutoencoderKL")
      throw unsupported(s.config_path, "VAE class \"" + s.class_name + "\" is not supported (AutoencoderKL)");
    if (s.kind == "vae_encoder") return std::make_unique<VaeEncoder>(cfg, p);
    return std::make_unique<VaeDecoder>(cfg, p);
  }
  throw Error(Code::InvalidArgument, "unknown component kind \"" + s.kind + "\"");
}

}  // namespace pg25
