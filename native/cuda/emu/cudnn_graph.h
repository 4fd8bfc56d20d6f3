// The emulated cuDNN's graphs once finalized, and the engines that run them on the CPU (cudnn_exec.cc);
// the API around them (descriptors, attributes, finalization, execute) is emu/cudnn.cc.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pg25::emu::dnn {

constexpr int32_t kFloat = 0, kHalf = 2, kBf16 = 9;  // cudnnDataType_t

// A finalized graph, copied out of its descriptors: later changes to them (or their destruction) do
// not reach the plans built on it.
struct TensorInfo {
  int64_t uid, dims[4], strides[4], align;
  int32_t type;
  bool is_virtual;
};
struct Node {
  bool conv;
  int in, other, out;  // tensor indices: x and w for a convolution, x and b for an add
  int64_t stride[2], pre[2], dil[2];
  float alpha1 = 1.f, alpha2 = 1.f;
};
struct Graph {
  const void* handle;  // the cudnnHandle_t it was built for
  std::vector<TensorInfo> tensors;
  std::vector<Node> nodes;  // in dependency order
};

size_t elem_size(int32_t type);
// Elements a tensor spans through its strides.
int64_t extent(const TensorInfo& t);
// The engines heuristics `mode` offers for a graph (none for a pattern the emulation does not run).
std::vector<int64_t> engines_for(const Graph& g, int32_t mode);
// Whether an engine takes the graph (else its plan does not finalize), and the workspace it needs.
bool engine_supports(const Graph& g, int64_t engine);
int64_t engine_workspace(const Graph& g, int64_t engine);
// Runs the graph on the CPU with the variant pack's pointers (by tensor index) and workspace.
std::string run_graph(const Graph& g, int64_t engine, const std::vector<const void*>& ptr, void* workspace);

}  // namespace pg25::emu::dnn
