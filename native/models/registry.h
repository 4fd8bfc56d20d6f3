// The model registry: which graph a component of a diffusers folder builds, from its kind and class
// name (model_index.json's) and its config; classes this package does not implement are refused by name.
#pragma once
#include <memory>
#include <string>
#include <variant>

#include "clip.h"
#include "params.h"
#include "unet.h"
#include "vae.h"

namespace pg25 {

struct ComponentSpec {
  std::string kind, class_name, config_path, config_text;
};
using Model = std::variant<std::monostate, std::unique_ptr<ClipTextModel>, std::unique_ptr<UNet>, std::unique_ptr<VaeDecoder>,
                           std::unique_ptr<VaeEncoder>>;
// The component's graph, asking `p` for its weights (a dry run when `p` has no backend).
Model build(const ComponentSpec& s, Params& p);

}  // namespace pg25
