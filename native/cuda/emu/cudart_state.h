// The emulated CUDA runtime's handles, state and internal helpers, shared by its parts: cudart.cc
// (devices, errors, the report), cudart_memory.cc (allocations, copies, the pool), cudart_streams.cc
// (streams, events, synchronisation) and cudart_graphs.cc (capture, graphs, memory nodes). The rest of
// the emulation uses runtime.h instead.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "runtime.h"

// The allocations a capture made (memory nodes), kept while the graph, an executable graph made from
// it, or a launch of one still queued holds them: as CUDA frees an in-flight executable graph only
// once it completes.
struct GraphMemory {
  std::vector<std::pair<void*, size_t>> owned;
  std::set<void*> freed;  // those the capture also freed (free nodes)
  ~GraphMemory();
};
struct CUgraph_st {
  std::vector<std::function<std::string()>> ops;
  std::shared_ptr<GraphMemory> mem = std::make_shared<GraphMemory>();
};
struct CUgraphExec_st {
  std::vector<std::function<std::string()>> ops;
  std::shared_ptr<GraphMemory> mem;
  uint64_t launches = 0;
};
struct CUstream_st {
  unsigned flags = 0;
  int device = 0;  // the device current when it was created: its kernels must launch there
  std::mutex mu;   // guards the queue, counters and capture
  std::deque<std::function<std::string()>> queue;
  uint64_t enqueued = 0, completed = 0;
  std::recursive_mutex run_mu;  // one runner at a time, so ops run once and in order
  CUgraph_st* capture = nullptr;
  bool capture_invalidated = false;
  std::string failure;  // the first op failure since the last synchronise
};
struct EventCell {
  bool done = false;
  double ms = 0;
};
struct CUevent_st {
  CUstream_st* stream = nullptr;
  uint64_t seq = 0;
  std::shared_ptr<EventCell> cell;
};
struct CUmemPoolHandle_st {
  uint64_t release_threshold = 0;
};

namespace pg25::emu::rt {

struct Alloc {
  size_t size;
  bool freeing;
};

struct State {
  std::mutex mu;
  std::set<CUstream_st*> streams;
  std::set<CUevent_st*> events;
  std::set<CUgraph_st*> graphs;
  std::set<CUgraphExec_st*> execs;
  std::map<uintptr_t, Alloc> allocs;
  uint64_t in_use = 0, peak = 0;
  CUstream_st legacy;
  CUmemPoolHandle_st pool;
  // The report has its own lock, taken last: misuse is noted from under any other lock.
  std::mutex rep_mu;
  Report rep;
};
State& S();

// The error cudaGetLastError answers, and the device this host thread has made current
// (cudaSetDevice), both kept per thread as CUDA keeps them.
extern thread_local cudaError_t tl_last;
extern thread_local int tl_device;

// Notes `why` as misuse and answers `e` (also as the last error).
cudaError_t fail(cudaError_t e, const std::string& why);
std::string ptr(const void* p);
// The emulated machine, as PG25_EMU_DEVICE_MEMORY, PG25_EMU_DRIVER_VERSION and PG25_EMU_DEVICES set it.
uint64_t capacity();
// PG25_EMU_GRAPH_MEMORY=launch: a capture's allocations are not refused for room; the graph's first
// launch is, where they do not fit (as a driver that backs graph memory at launch can answer).
bool graph_memory_at_launch();
int driver_version();
int device_count();

// Work that runs on a stream's device (kernels, stream-ordered allocation) must be issued with that
// device current: CUDA refuses it otherwise, so a backend that forgot cudaSetDevice on this thread is
// reported here, not left to fail only on a multi-GPU machine.
bool on_stream_device(CUstream_st* st, const char* what);
// The live stream for a handle (NULL is the legacy default stream), or null after reporting.
CUstream_st* stream_of(cudaStream_t s, const char* what);
// Queues an op on a stream, or records it into the graph the stream is capturing.
void push(CUstream_st* st, std::function<std::string()> op);
// Runs all of a stream's queued ops; answers the failure of one, once.
cudaError_t finish(CUstream_st* st);

// Whether `h` is one of the live handles in `handles` (events, executable graphs).
template <class H>
bool live(const std::set<H>& handles, H h) {
  std::lock_guard<std::mutex> g(S().mu);
  return handles.count(h) != 0;
}

// Frees an allocation now (its queued users have run, or there are none).
void release(void* p);

}  // namespace pg25::emu::rt
