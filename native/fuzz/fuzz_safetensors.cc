// libFuzzer target: the safetensors header parser over arbitrary file images. Every input must either
// parse into entries whose ranges lie inside the data section, or raise pg25::Error; nothing else.
#include <cstdint>
#include <cstdlib>

#include "../core/error.h"
#include "../io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    uint64_t data_offset = 0;
    auto entries = pg25::parse_safetensors_header(data, size, "fuzz", &data_offset);
    for (const auto& e : entries)
      if (data_offset + e.end > size || e.begin > e.end) std::abort();  // a validated range must be readable
  } catch (const pg25::Error&) {
  }
  return 0;
}
