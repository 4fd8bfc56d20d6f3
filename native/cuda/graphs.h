// CUDA graphs for the CUDA backend: a model call's kernels recorded once per input shapes and replayed,
// so a UNet call costs one launch instead of ~1,800.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../backend/backend.h"
#include "device_memory.h"

namespace pg25::cuda {

class GraphRecorder final : public Recorder {
 public:
  // `make` takes a device tensor of a shape and storage (wide: bf16) on the engine's stream; `notice`
  // tells the user of a recording that failed.
  using Make = std::function<Tensor(const Shape&, bool wide)>;
  GraphRecorder(std::shared_ptr<Stream> engine, Make make, std::function<void(const std::string&)> notice);
  ~GraphRecorder() override;
  // body(inputs), as Backend::run_recorded defines it. The first call at these input shapes runs
  // eagerly: the libraries' lazy set-up (cuDNN's plans and run-time compiled kernels, cuBLASLt's
  // heuristics, module loads) happens there, outside any capture, where some of it is not allowed.
  // Once one such call has completed, the next records, and later calls replay. A recording that fails
  // (a library call the capture refuses) leaves these shapes eager, with a notice: the call itself
  // still runs; one that finds no room for the graph's memory is tried again 100 calls later. The result is a
  // tensor of its own (the recording's output buffer is copied out, so a later replay never changes it).
  Tensor run(const std::vector<Tensor>& inputs, const Shape& out_shape, const std::function<Tensor(const std::vector<Tensor>&)>& body);

 private:
  struct Graph {
    std::vector<Tensor> in;                   // fixed input buffers: each call's inputs are copied here before replay
    std::vector<std::weak_ptr<Buffer>> from;  // the buffer each was last copied from
    Tensor out;                               // the fixed output buffer the recording writes last
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    int64_t calls = 0;     // calls at these shapes so far
    int64_t warmed = 0;    // eager calls that completed (the libraries' set-up done)
    int64_t retry_at = 0;  // after a recording found no room: eager until this call
    bool eager = false;    // a library refused the recording: kernel by kernel from now on
    bool told = false;     // the user has had a notice about these shapes
  };
  void forget(Graph& g);
  void record(Graph& g, const std::vector<Tensor>& inputs, const Shape& out_shape,
              const std::function<Tensor(const std::vector<Tensor>&)>& body);

  std::shared_ptr<Stream> engine_;
  Make make_;
  std::function<void(const std::string&)> notice_;
  cudaStream_t capture_ = nullptr;  // recording happens here, off the engine's stream
  std::mutex mu_;                   // one recording or replay enqueue at a time: they share the fixed buffers
  std::map<std::string, Graph> graphs_;
};

}  // namespace pg25::cuda
