// The emulated runtime's streams: in-order queues that run only at synchronisation points, so a host
// read without a synchronise sees stale data; events mark a point in a stream's queue.
#include <chrono>
#include <cstdio>

#include "cudart_state.h"

namespace pg25::emu {
namespace rt {

bool on_stream_device(CUstream_st* st, const char* what) {
  if (!st || st == &S().legacy || st->device == tl_device) return true;  // each device has a legacy stream; one stands in for all
  note_misuse(std::string(what) + ": a stream of device " + std::to_string(st->device) + " used while device " + std::to_string(tl_device) +
              " is current on this thread");
  tl_last = cudaErrorInvalidResourceHandle;
  return false;
}

CUstream_st* stream_of(cudaStream_t s, const char* what) {
  if (!s) return &S().legacy;
  {
    std::lock_guard<std::mutex> g(S().mu);
    if (S().streams.count(s)) return s;
  }
  note_misuse(std::string(what) + ": stream " + ptr(s) + " is not a live stream (destroyed, or never created)");
  tl_last = cudaErrorInvalidResourceHandle;
  return nullptr;
}

void push(CUstream_st* st, std::function<std::string()> op) {
  std::lock_guard<std::mutex> g(st->mu);
  if (st->capture) st->capture->ops.push_back(std::move(op));
  else {
    st->queue.push_back(std::move(op));
    st->enqueued++;
  }
}

namespace {

// Runs a stream's queued ops until `upto` of them have ever completed.
void run(CUstream_st* st, uint64_t upto) {
  std::lock_guard<std::recursive_mutex> r(st->run_mu);
  for (;;) {
    std::function<std::string()> op;
    {
      std::lock_guard<std::mutex> g(st->mu);
      if (st->queue.empty() || st->completed >= upto) return;
      op = std::move(st->queue.front());
      st->queue.pop_front();
    }
    std::string e = op();
    {
      std::lock_guard<std::mutex> g(st->mu);
      st->completed++;
      if (!e.empty() && st->failure.empty()) st->failure = e;
    }
    if (!e.empty()) {
      note_misuse(e);
      std::fprintf(stderr, "pg25 CUDA emulation: %s\n", e.c_str());
    }
  }
}

// The failure of an op since the last synchronisation, reported once (as a GPU reports a fault).
cudaError_t take_failure(CUstream_st* st) {
  std::lock_guard<std::mutex> g(st->mu);
  if (st->failure.empty()) return cudaSuccess;
  st->failure.clear();
  tl_last = cudaErrorLaunchFailure;
  return cudaErrorLaunchFailure;
}

void count_wait() {
  std::lock_guard<std::mutex> g(S().rep_mu);
  S().rep.host_waits++;
}

}  // namespace

cudaError_t finish(CUstream_st* st) {
  run(st, UINT64_MAX);
  return take_failure(st);
}

namespace {

bool capturing(CUstream_st* st, const char* what) {
  std::lock_guard<std::mutex> g(st->mu);
  if (!st->capture) return false;
  st->capture_invalidated = true;
  note_misuse(std::string(what) + " during stream capture (the capture is invalidated)");
  tl_last = cudaErrorStreamCaptureUnsupported;
  return true;
}

}  // namespace
}  // namespace rt

using namespace rt;

bool enqueue(cudaStream_t stream, std::function<std::string()> op) {
  CUstream_st* st = stream_of(stream, "enqueue");
  if (!st || !on_stream_device(st, "a library call")) return false;
  push(st, std::move(op));
  return true;
}

void enqueue_launch(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, std::function<void()> body) {
  std::string bad = check_launch(grid, block, shared_bytes);
  if (!bad.empty()) {
    fail(cudaErrorInvalidConfiguration, std::string("launch of ") + kernel + ": " + bad);
    return;
  }
  CUstream_st* st = stream_of(stream, kernel);
  if (!st || !on_stream_device(st, kernel)) return;
  {
    std::lock_guard<std::mutex> g(S().rep_mu);
    S().rep.launches++;
  }
  push(st, [kernel, grid, block, shared_bytes, body = std::move(body)] { return run_grid(kernel, grid, block, shared_bytes, body); });
}

}  // namespace pg25::emu

using namespace pg25::emu;
using namespace pg25::emu::rt;

cudaError_t cudaDeviceSynchronize() {
  count_wait();
  std::vector<CUstream_st*> all;
  {
    std::lock_guard<std::mutex> g(S().mu);
    all.assign(S().streams.begin(), S().streams.end());
  }
  all.push_back(&S().legacy);
  cudaError_t result = cudaSuccess;
  for (CUstream_st* st : all)
    if (cudaError_t e = finish(st)) result = e;
  return result;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (!stream) return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags(nullptr)");
  auto* st = new CUstream_st();
  st->flags = flags;
  st->device = tl_device;
  std::lock_guard<std::mutex> g(S().mu);
  S().streams.insert(st);
  *stream = st;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy(NULL)");
  CUstream_st* st = stream_of(stream, "cudaStreamDestroy");
  if (!st) return cudaErrorInvalidResourceHandle;
  run(st, UINT64_MAX);  // CUDA lets queued work finish, then releases the stream
  {
    std::lock_guard<std::mutex> g(S().mu);
    S().streams.erase(st);
  }
  delete st;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  count_wait();
  CUstream_st* st = stream_of(stream, "cudaStreamSynchronize");
  if (!st) return cudaErrorInvalidResourceHandle;
  if (capturing(st, "cudaStreamSynchronize")) return cudaErrorStreamCaptureUnsupported;
  return finish(st);
}
cudaError_t cudaStreamQuery(cudaStream_t stream) {
  CUstream_st* st = stream_of(stream, "cudaStreamQuery");
  if (!st) return cudaErrorInvalidResourceHandle;
  if (capturing(st, "cudaStreamQuery")) return cudaErrorStreamCaptureUnsupported;
  return finish(st);  // a query is a point where queued work makes progress, so polling never spins forever
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
  CUstream_st* st = stream_of(stream, "cudaStreamWaitEvent");
  if (!st) return cudaErrorInvalidResourceHandle;
  if (!live(S().events, event)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: not a live event");
  if (!event->cell || !event->stream) return cudaSuccess;
  push(st, [cell = event->cell, other = event->stream, seq = event->seq] {
    if (!cell->done) run(other, seq);
    return std::string();
  });
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
  if (!event) return fail(cudaErrorInvalidValue, "cudaEventCreate(nullptr)");
  auto* e = new CUevent_st();
  std::lock_guard<std::mutex> g(S().mu);
  S().events.insert(e);
  *event = e;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  {
    std::lock_guard<std::mutex> g(S().mu);
    if (!S().events.erase(event)) event = nullptr;
  }
  if (!event) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: not a live event");
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!live(S().events, event)) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: not a live event");
  CUstream_st* st = stream_of(stream, "cudaEventRecord");
  if (!st) return cudaErrorInvalidResourceHandle;
  auto cell = std::make_shared<EventCell>();
  std::lock_guard<std::mutex> g(st->mu);
  auto op = [cell] {
    cell->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
    cell->done = true;
    return std::string();
  };
  if (st->capture) {
    st->capture->ops.push_back(op);
    return cudaSuccess;
  }
  st->queue.push_back(op);
  st->enqueued++;
  event->stream = st;
  event->seq = st->enqueued;
  event->cell = cell;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  count_wait();
  if (!live(S().events, event)) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: not a live event");
  if (!event->cell || event->cell->done) return cudaSuccess;
  run(event->stream, event->seq);
  return take_failure(event->stream);
}
cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms || !start || !end || !start->cell || !end->cell) return fail(cudaErrorInvalidValue, "cudaEventElapsedTime: events not recorded");
  if (!start->cell->done || !end->cell->done) return tl_last = cudaErrorNotReady;
  *ms = float(end->cell->ms - start->cell->ms);
  return cudaSuccess;
}
