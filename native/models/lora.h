// LoRA merged into a loaded component's weights, in place: W = W0 + up · down, where W0 is the
// weight as the model's files hold it (read again, so unmerging is exact) and up · down is the sum of
// every active LoRA's low-rank product for that layer (the caller stacks them along the rank axis and
// folds each one's scale x alpha / rank into its `up` rows).
//
// Why merged rather than a low-rank branch at run time: a merge costs, once per change of the LoRA set
// or a scale (nothing when a call repeats the current scales), one small-K GEMM per touched weight plus
// reading its original again: for a rank-32 LoRA on all of SDXL's ~1.9e9 attention and feed-forward
// weights, ~0.12 TFLOP and ~3.8 GB of fp16 originals sent to the GPU, ~0.15-0.2 s on a PCIe 4/5 H100
// (on the tiny test model a re-merge takes 15-30 ms on the CPU, an 8-step run 0.4-0.6 s). A
// branch costs two extra GEMMs over the activations of every touched layer at every step of every
// call (at 1024², batch 2, each re-reads 10-40 MB of activations: a few ms per step, so 0.1-0.2 s per
// 30-step call, every call) and needs a second code path through every linear and convolution. Merged,
// the UNet graph, its fused kernels and a captured CUDA graph stay as they are: the weights change in
// place, at the same addresses. (Estimates from the sizes; no GPU was at hand to time them.)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../io/weights.h"
#include "params.h"

namespace pg25 {

// Floats the caller keeps alive and unchanged while apply_lora runs (the binding: the JS arrays themselves,
// held by reference, so that a LoRA's factors are not copied on their way in).
struct FloatView {
  const float* data = nullptr;
  size_t size = 0;
};

struct LoraUpdate {
  std::string name;  // the weight, e.g. "mid_block.attentions.0.proj_in.weight"
  int64_t rank = 0;  // 0 restores the original weight
  FloatView up;      // [out, rank], row-major, scales folded in
  FloatView down;    // [rank, K], K = the weight's elements per output row
};

// Checks every update against the component's weights (throws PG25_INVALID_ARGUMENT naming the first
// that does not fit) before changing anything, then writes each merged weight into the tensor the
// model holds. `originals` holds the weights as loaded (the component's files).
void apply_lora(Backend& be, const Params& params, const WeightStore& originals, const std::vector<LoraUpdate>& updates);

// Counts the weight changes apply_lora has made (in any model): what is derived from weights and kept
// (a UNet's projected conditioning, memo() in backend/tensor.h) names the count it was made under.
uint64_t lora_epoch();

}  // namespace pg25
