// libFuzzer target: model config.json text through the JSON reader and every graph's config checks
// (a dry build: no weights). Anything but success or pg25::Error is a bug.
#include <cstdint>
#include <string>

#include "../core/config.h"
#include "../core/error.h"
#include "../models/clip.h"
#include "../models/unet.h"
#include "../models/vae.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  for (int kind = 0; kind < 3; kind++) {
    try {
      pg25::Config cfg("fuzz.json", text);
      pg25::Params p(nullptr, nullptr);
      if (kind == 0) pg25::ClipTextModel("CLIPTextModelWithProjection", cfg, p);
      if (kind == 1) pg25::UNet(cfg, p);
      if (kind == 2) pg25::VaeDecoder(cfg, p);
    } catch (const pg25::Error&) {
    }
  }
  return 0;
}
