// The weights of one model component: one or more safetensors files (shards), looked up by name.
// Paddle-format files store nn.Linear weights as [in, out]; they are transposed on load.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../backend/tensor.h"
#include "safetensors.h"

namespace pg25 {

struct WeightFileSpec {
  std::string path;
  bool paddle = false;
};

// Where a tensor lives under another name, as in single-file checkpoints: the whole source tensor
// (a 1x1 conv may stand for a linear weight), a block of its rows (a fused q/k/v projection), or
// its transpose.
struct WeightAlias {
  enum class Op { Rename, Rows, Transpose };
  std::string source;
  Op op = Op::Rename;
  int64_t row_begin = 0, row_count = 0;
};

class WeightStore {
 public:
  WeightStore() = default;
  explicit WeightStore(const std::vector<WeightFileSpec>& files, std::map<std::string, WeightAlias> aliases = {});
  // Deterministic synthetic weights from a seed, for any graph (no files): norms 1, biases 0,
  // embeddings ~N(0, 0.02), other weights ~N(0, 1/fan_in). The same name and seed always give the same tensor.
  static WeightStore synthetic(uint64_t seed);

  struct Found {
    const SafetensorsFile* file;
    const TensorEntry* entry;
    bool paddle;
  };
  const Found* find(const std::string& name) const;
  // Reads `name` as float32 in PyTorch layout, checking it against `shape`. `linear` marks an
  // nn.Linear weight (transposed when the file is Paddle-format).
  std::vector<float> read(const std::string& name, const Shape& shape, bool linear) const;
  // The file's own float16 bits of `name`, read into `bits`, when they need no conversion: stored as
  // F16 under that name, in `shape`, not transposed. Else false, and read() is the way.
  bool read_f16(const std::string& name, const Shape& shape, bool linear, std::vector<uint16_t>* bits) const;
  // The bytes `name` (as `shape`) takes in its file, through any alias: what load progress counts.
  // 0 for synthetic weights or a tensor that is not there.
  int64_t stored_bytes(const std::string& name, const Shape& shape) const;
  std::string describe() const;  // the file list, for error messages
  std::vector<std::string> names() const;

 private:
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::vector<bool> paddle_;
  std::map<std::string, Found> index_;
  std::map<std::string, WeightAlias> aliases_;
  bool synthetic_ = false;
  uint64_t seed_ = 0;
};

}  // namespace pg25
