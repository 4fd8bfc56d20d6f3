// LoRA merged into a loaded component's weights, in place: W = W0 + up · down, where W0 is the
// weight as the model's files hold it (read again, so unmerging is exact) and up · down is the sum of
// every active LoRA's low-rank product for that layer (the caller stacks them along the rank axis and
// folds each one's scale x alpha / rank into its `up` rows).
//
// Why merged rather than a low-rank branch at run time: a merge costs one small-K GEMM per touched
// layer when the LoRA set or a scale changes (and nothing when a call repeats the current scales); a
// branch costs two extra GEMMs over the activations of every touched layer at every step of every
// call (for SDXL at 1024², re-reading ~20 MB of activations per layer, for hundreds of layers, per
// step). The merged path also leaves the UNet graph, its fused kernels and a captured CUDA graph
// unchanged: the weights change in place, at the same addresses.
#pragma once
#include <string>
#include <vector>

#include "../io/weights.h"
#include "params.h"

namespace pg25 {

struct LoraUpdate {
  std::string name;         // the weight, e.g. "mid_block.attentions.0.proj_in.weight"
  int64_t rank = 0;         // 0 restores the original weight
  std::vector<float> up;    // [out, rank], row-major, scales folded in
  std::vector<float> down;  // [rank, K], K = the weight's elements per output row
};

// Checks every update against the component's weights (throws PG25_INVALID_ARGUMENT naming the first
// that does not fit) before changing anything, then writes each merged weight into the tensor the
// model holds. `originals` holds the weights as loaded (the component's files).
void apply_lora(Backend& be, const Params& params, const WeightStore& originals, const std::vector<LoraUpdate>& updates);

}  // namespace pg25
