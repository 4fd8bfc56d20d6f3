// The emulated runtime's graphs: a stream capture records the ops it would have queued, and a graph
// launch queues them again; allocations made during capture (memory nodes) live with the graph.
#include <cstring>

#include "cudart_state.h"

using namespace pg25::emu;
using namespace pg25::emu::rt;

namespace {
thread_local CUstream_st* tl_capture = nullptr;  // the stream this thread is capturing (thread-local mode)
}  // namespace

bool pg25::emu::refuse_during_capture() {
  CUstream_st* st = tl_capture;
  if (!st) return false;
  std::lock_guard<std::mutex> g(st->mu);
  if (!st->capture) return false;
  st->capture_invalidated = true;
  return true;
}

GraphMemory::~GraphMemory() {
  for (auto& a : owned) release(a.first);
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  CUstream_st* st = stream_of(stream, "cudaStreamBeginCapture");
  if (!st) return cudaErrorInvalidResourceHandle;
  if (st == &S().legacy) return fail(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture on the legacy NULL stream");
  std::lock_guard<std::mutex> g(st->mu);
  if (st->capture) return fail(cudaErrorIllegalState, "cudaStreamBeginCapture: the stream is already capturing");
  st->capture = new CUgraph_st();
  st->capture_invalidated = false;
  tl_capture = st;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  CUstream_st* st = stream_of(stream, "cudaStreamEndCapture");
  if (!st || !graph) return cudaErrorInvalidValue;
  std::unique_lock<std::mutex> g(st->mu);
  if (!st->capture) {
    g.unlock();
    return fail(cudaErrorIllegalState, "cudaStreamEndCapture: the stream is not capturing");
  }
  CUgraph_st* gr = st->capture;
  st->capture = nullptr;
  if (tl_capture == st) tl_capture = nullptr;
  bool invalid = st->capture_invalidated;
  g.unlock();
  if (invalid) {
    delete gr;
    *graph = nullptr;
    tl_last = cudaErrorStreamCaptureInvalidated;
    return cudaErrorStreamCaptureInvalidated;
  }
  std::lock_guard<std::mutex> sg(S().mu);
  S().graphs.insert(gr);
  *graph = gr;
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  CUstream_st* st = stream_of(stream, "cudaStreamIsCapturing");
  if (!st || !status) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> g(st->mu);
  *status = !st->capture              ? cudaStreamCaptureStatusNone
            : st->capture_invalidated ? cudaStreamCaptureStatusInvalidated
                                      : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  std::lock_guard<std::mutex> g(S().mu);
  if (!exec || !S().graphs.count(graph)) return fail(cudaErrorInvalidValue, "cudaGraphInstantiate: not a live graph");
  auto* x = new CUgraphExec_st{graph->ops, graph->mem};
  S().execs.insert(x);
  *exec = x;
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!live(S().execs, exec)) return fail(cudaErrorInvalidValue, "cudaGraphLaunch: not a live executable graph");
  CUstream_st* st = stream_of(stream, "cudaGraphLaunch");
  if (!st || !on_stream_device(st, "cudaGraphLaunch")) return cudaErrorInvalidResourceHandle;
  std::shared_ptr<GraphMemory> mem = exec->mem;
  size_t held = 0;
  for (auto& a : mem->owned)
    if (!mem->freed.count(a.first)) held++;
  // CUDA refuses to relaunch a graph whose allocations a previous launch still holds (unless it was
  // instantiated to free them on launch, which we never ask for).
  if (held && exec->launches > 0)
    return fail(cudaErrorInvalidValue,
                "cudaGraphLaunch: " + std::to_string(held) + " allocation(s) of the previous launch are not freed within the graph");
  if (exec->launches == 0 && graph_memory_at_launch()) {
    std::lock_guard<std::mutex> g(S().mu);
    if (S().in_use > capacity()) return tl_last = cudaErrorMemoryAllocation;
  }
  exec->launches++;
  push(st, [mem] {
    for (auto& a : mem->owned) std::memset(a.first, 0xff, a.second);  // a memory node's contents start undefined
    return std::string();
  });
  for (const auto& op : exec->ops) push(st, op);
  push(st, [mem] { return std::string(); });  // holds the memory until this launch has run
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  std::lock_guard<std::mutex> g(S().mu);
  if (!S().execs.erase(exec)) return tl_last = cudaErrorInvalidValue;
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaDeviceGraphMemTrim(int device) {
  if (device < 0 || device >= device_count()) return fail(cudaErrorInvalidDevice, "cudaDeviceGraphMemTrim(" + std::to_string(device) + ")");
  return cudaSuccess;  // graph memory goes back when its graph is destroyed here
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  {
    std::lock_guard<std::mutex> g(S().mu);
    if (!S().graphs.erase(graph)) return tl_last = cudaErrorInvalidValue;
  }
  delete graph;  // its memory goes with the last executable graph or queued launch that holds it
  return cudaSuccess;
}
