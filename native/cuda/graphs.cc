#include "graphs.h"

#include <cstring>
#include <utility>

#include "../core/error.h"

namespace pg25::cuda {
namespace {

std::string key_of(const std::vector<Tensor>& inputs) {
  std::string k;
  for (const Tensor& t : inputs) k += shape_str(t.shape) + (is_wide(t) ? "w" : "h");
  return k;
}

void copy(const Tensor& dst, const Tensor& src, cudaStream_t s, const char* what) {
  check(cudaMemcpyAsync(dev_ptr(dst), dev_ptr(src), size_t(src.numel()) * 2, cudaMemcpyDeviceToDevice, s), what);
}

// Ends this thread's recording, however the recording ends.
struct RecordingScope {
  RecordingScope(const Stream* engine, cudaStream_t s, std::atomic<int64_t>* live) { recording() = {engine, s, live}; }
  ~RecordingScope() { recording() = {}; }
};

}  // namespace

GraphRecorder::GraphRecorder(std::shared_ptr<Stream> engine, Make make, std::function<void(const std::string&)> notice)
    : engine_(std::move(engine)), make_(std::move(make)), notice_(std::move(notice)) {
  check(cudaStreamCreateWithFlags(&capture_, cudaStreamNonBlocking), "graph recording stream");
}

GraphRecorder::~GraphRecorder() {
  // No wait for replays still queued: CUDA frees an executable graph in flight once it completes.
  for (auto& [key, g] : graphs_) {
    if (g.exec) cudaGraphExecDestroy(g.exec);
    if (g.graph) cudaGraphDestroy(g.graph);
  }
  graphs_.clear();
  cudaDeviceGraphMemTrim(engine_->device);  // the graphs' memory back to the device
  cudaStreamDestroy(capture_);
}

// Drops a recording and its fixed buffers (the next recording of these shapes starts afresh).
void GraphRecorder::forget(Graph& g) {
  if (g.exec) cudaGraphExecDestroy(g.exec);
  if (g.graph) cudaGraphDestroy(g.graph);
  g.exec = nullptr;
  g.graph = nullptr;
  g.in.clear();
  g.from.clear();
  g.out = Tensor();
  cudaDeviceGraphMemTrim(engine_->device);
}

void GraphRecorder::record(Graph& g, const std::vector<Tensor>& inputs, const Shape& out_shape,
                           const std::function<Tensor(const std::vector<Tensor>&)>& body) {
  // The graph's memory is its own, beside the stream pool's: the blocks the pool keeps cached since the
  // eager first call go back to the device first, so the recording can take them.
  check(cudaStreamSynchronize(engine_->s), "waiting before a graph recording");
  cudaMemPool_t pool;
  if (cudaDeviceGetDefaultMemPool(&pool, engine_->device) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
  g.in.clear();
  g.from.clear();
  for (const Tensor& t : inputs) g.in.push_back(make_(t.shape, is_wide(t)));
  g.out = make_(out_shape, inputs.empty() ? false : is_wide(inputs[0]));
  std::atomic<int64_t> live{0};
  {
    RecordingScope scope(engine_.get(), capture_, &live);
    // Thread-local mode: only this thread's calls are captured (and checked), so other engines and
    // other jobs of this engine go on meanwhile.
    check(cudaStreamBeginCapture(capture_, cudaStreamCaptureModeThreadLocal), "beginning a graph recording");
    try {
      Tensor y = body(g.in);
      if (y.shape != out_shape || is_wide(y) != is_wide(g.out))
        throw Error(Code::Internal, "recorded work returned " + shape_str(y.shape) + ", not " + shape_str(out_shape));
      copy(g.out, y, capture_, "a recorded result");
    } catch (...) {
      cudaGraph_t discard = nullptr;
      cudaStreamEndCapture(capture_, &discard);
      if (discard) cudaGraphDestroy(discard);
      cudaGetLastError();
      throw;
    }
    check(cudaStreamEndCapture(capture_, &g.graph), "ending a graph recording");
  }
  // Every buffer the body took is given back within the graph: then the graph can be replayed any
  // number of times (CUDA refuses to relaunch a graph whose allocations are still held).
  if (live.load() != 0) {
    cudaGraphDestroy(g.graph);
    g.graph = nullptr;
    throw Error(Code::Internal, std::to_string(live.load()) + " tensor(s) made while recording outlived the recording");
  }
  cudaError_t e = cudaGraphInstantiate(&g.exec, g.graph, 0);
  if (e != cudaSuccess) {
    cudaGraphDestroy(g.graph);
    g.graph = nullptr;
    g.exec = nullptr;
    check(e, "instantiating a graph");
  }
}

Tensor GraphRecorder::run(const std::vector<Tensor>& inputs, const Shape& out_shape,
                          const std::function<Tensor(const std::vector<Tensor>&)>& body) {
  std::unique_lock<std::mutex> lock(mu_);
  Graph& g = graphs_[key_of(inputs)];  // map nodes stay put: g outlives the unlocked stretches below
  int64_t call = g.calls++;
  // Eager until one eager call has completed (one cancelled part way, or still running on another
  // thread, has not set everything up), and while a failed recording waits for its retry.
  if (g.eager || g.warmed == 0 || call < g.retry_at) {
    lock.unlock();
    Tensor y = body(inputs);
    lock.lock();
    g.warmed++;
    return y;
  }
  if (!g.exec) {
    try {
      record(g, inputs, out_shape, body);
    } catch (const Error& e) {
      forget(g);
      // A library the capture refuses: these shapes run eagerly from now on. No room for the graph's own
      // memory beside the pool's: eagerly for a while. Anything else (a cancelled call) is not the
      // recording's fault, and the next call records again.
      bool no_room = e.code() == Code::OutOfMemory;
      if (e.code() != Code::Internal && !no_room) throw;
      if (no_room) g.retry_at = call + 100;
      else g.eager = true;
      if (!std::exchange(g.told, true))
        notice_(std::string("a CUDA graph could not be recorded (") + e.what() +
                "): UNet calls at these shapes launch their kernels one by one, slower" +
                (no_room ? " (tried again every 100 calls)" : ""));
      lock.unlock();
      return body(inputs);
    }
  }
  // Inputs in, replay, result out: all on the engine's stream, so in order with the work around them
  // and with any other replay of this graph.
  // An input that is the very buffer copied last time holds the same values still (ops never write into
  // their inputs), so it stays: the conditioning's keys and values go in once per run, not per step.
  g.from.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); i++) {
    const std::shared_ptr<Buffer>& b = inputs[i].buf;
    std::weak_ptr<Buffer>& last = g.from[i];
    if (!last.expired() && !last.owner_before(b) && !b.owner_before(last)) continue;
    copy(g.in[i], inputs[i], engine_->s, "a recorded input");
    last = b;
  }
  // A graph's memory is backed when it is launched, not when it is instantiated: no room then is the
  // recording's no room, found later. The graph goes (its memory with it) and the call runs eagerly.
  cudaError_t launched = cudaGraphLaunch(g.exec, engine_->s);
  if (launched == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    forget(g);
    g.retry_at = call + 100;
    if (!std::exchange(g.told, true))
      notice_(
          "a CUDA graph could not be replayed (GPU out of memory for its own memory at launch): UNet calls at these shapes launch their "
          "kernels "
          "one by one, slower (tried again every 100 calls)");
    lock.unlock();
    return body(inputs);
  }
  check(launched, "replaying a graph");
  Tensor y = make_(out_shape, is_wide(g.out));
  copy(y, g.out, engine_->s, "a recorded result");
  return y;
}

}  // namespace pg25::cuda
