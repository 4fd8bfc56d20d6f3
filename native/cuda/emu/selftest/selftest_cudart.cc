// The cudart stand-in (cudart*.cc): streams, copies, events, graphs, memory and devices, checked by
// selftest_main.cc.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <thread>

#include "../../launch.h"
#include "../include/cuda_fp16.h"
#include "selftest.h"

namespace selftest {

__global__ void add_kernel(int* p, int n, int v) {
  int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) p[i] += v;
}
__global__ void scale_kernel(int* p, int n, int f) {
  int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) p[i] *= f;
}

namespace {

std::vector<int> iota_vec(size_t n, int first) {
  std::vector<int> v(n);
  for (size_t i = 0; i < n; i++) v[i] = first + int(i);
  return v;
}

// Streams run only at synchronisation points; host sources are read when a copy is queued.
void check_stream_deferred() {
  Stream s;
  const int n = 1000;
  Dev<int> d(n);
  std::vector<int> src = iota_vec(n, 1), host(n, -7);
  CUDA_OK(cudaMemcpyAsync(d.p, src.data(), n * sizeof(int), cudaMemcpyHostToDevice, s));
  std::fill(src.begin(), src.end(), 0);  // too late: the copy took its snapshot when queued
  PG25_LAUNCH(add_kernel, (n + 255) / 256, 256, 0, s)(d.p, n, 10);
  CUDA_OK(cudaMemcpyAsync(host.data(), d.p, n * sizeof(int), cudaMemcpyDeviceToHost, s));
  EXPECT(report(false).queued == 3, report(false).queued << " ops queued, want 3");
  EXPECT(std::all_of(host.begin(), host.end(), [](int v) { return v == -7; }),
         "a device-to-host copy wrote the host buffer before any synchronisation");
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(host == iota_vec(n, 11), "after cudaStreamSynchronize the host buffer does not hold the device data (first " << host[0] << ")");
  EXPECT(report(false).queued == 0, "work left queued after cudaStreamSynchronize");
  // The legacy NULL stream is deferred the same way, until cudaDeviceSynchronize.
  std::vector<int> host2(n, -1);
  CUDA_OK(cudaMemcpyAsync(host2.data(), d.p, n * sizeof(int), cudaMemcpyDeviceToHost, nullptr));
  EXPECT(host2[0] == -1, "a copy on the NULL stream ran before any synchronisation");
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT(host2 == iota_vec(n, 11), "cudaDeviceSynchronize did not run the NULL stream's copy");
  EXPECT_NO_MISUSE();
}

void check_memcpy2d() {
  Stream s;
  const size_t rows = 4, width = 6 * sizeof(float), spitch = 10 * sizeof(float), dpitch = 8 * sizeof(float), hpitch = 7 * sizeof(float);
  std::vector<float> src(10 * rows);
  for (size_t i = 0; i < src.size(); i++) src[i] = float(i);
  Dev<float> d(8 * rows);
  CUDA_OK(cudaMemcpy2DAsync(d.p, dpitch, src.data(), spitch, width, rows, cudaMemcpyHostToDevice, s));
  std::vector<float> back(7 * rows, -1.f);
  CUDA_OK(cudaMemcpy2DAsync(back.data(), hpitch, d.p, dpitch, width, rows, cudaMemcpyDeviceToHost, s));
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<float> dev = d.download();
  for (size_t r = 0; r < rows; r++)
    for (size_t c = 0; c < 8; c++) {
      if (c < 6) {
        EXPECT(dev[r * 8 + c] == src[r * 10 + c], "device row " << r << " col " << c << " = " << dev[r * 8 + c]);
        EXPECT(back[r * 7 + c] == src[r * 10 + c], "host row " << r << " col " << c << " = " << back[r * 7 + c]);
      } else {
        EXPECT(std::isnan(dev[r * 8 + c]), "device padding row " << r << " col " << c << " was written");  // still the 0xff poison
        if (c < 7) EXPECT(back[r * 7 + c] == -1.f, "host padding row " << r << " col " << c << " was written");
      }
    }
  EXPECT_NO_MISUSE();
  // A width wider than a pitch, and rows that run past the allocation, are refused.
  CUDA_IS(cudaMemcpy2DAsync(d.p, dpitch, src.data(), spitch, dpitch + 4, rows, cudaMemcpyHostToDevice, s), cudaErrorInvalidPitchValue);
  EXPECT_MISUSE("cudaMemcpy2DAsync", "exceeds a pitch");
  CUDA_IS(cudaMemcpy2DAsync(d.p, dpitch, src.data(), spitch, width, rows + 1, cudaMemcpyHostToDevice, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpy2DAsync", "runs past the end");
  cudaGetLastError();
  EXPECT(report(false).queued == 0, "a refused copy was queued");
}

// Every copy is checked against its kind and the allocations, and refused with cudaErrorInvalidValue.
void check_copy_validation() {
  Stream s;
  Dev<float> d(64), d2(64);
  std::vector<float> h(128, 1.f), h2(128, 0.f);
  CUDA_IS(cudaMemcpyAsync(h2.data(), h.data(), 256, cudaMemcpyHostToDevice, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpyAsync", "destination", "is not device memory");
  CUDA_IS(cudaGetLastError(), cudaErrorInvalidValue);
  CUDA_IS(cudaMemcpyAsync(d.p, h.data(), 260, cudaMemcpyHostToDevice, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpyAsync", "runs past the end of its device allocation");
  CUDA_IS(cudaMemcpyAsync(d.p + 32, h.data(), 132, cudaMemcpyHostToDevice, s), cudaErrorInvalidValue);  // from inside it, too
  EXPECT_MISUSE("cudaMemcpyAsync", "runs past the end");
  CUDA_IS(cudaMemcpyAsync(h2.data(), h.data(), 256, cudaMemcpyDeviceToHost, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpyAsync", "source", "is not device memory");
  CUDA_IS(cudaMemcpyAsync(d2.p, d.p, 256, cudaMemcpyDeviceToHost, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpyAsync", "destination", "the copy kind says host");
  CUDA_IS(cudaMemcpyAsync(d.p, h.data(), 256, cudaMemcpyDeviceToDevice, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpyAsync", "source", "is not device memory");
  CUDA_IS(cudaMemcpy(h2.data(), h.data(), 256, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemcpy", "is not device memory");
  CUDA_IS(cudaMemsetAsync(d.p, 0, 257, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaMemsetAsync", "not device memory");
  cudaGetLastError();
  EXPECT(report(false).queued == 0, "a refused copy was queued");
  EXPECT(std::all_of(h2.begin(), h2.end(), [](float v) { return v == 0.f; }), "a refused copy wrote host memory");
  // The valid kinds, cudaMemcpyDefault inferring them, still work.
  CUDA_OK(cudaMemcpyAsync(d.p, h.data(), 256, cudaMemcpyHostToDevice, s));
  CUDA_OK(cudaMemcpyAsync(d2.p, d.p, 256, cudaMemcpyDeviceToDevice, s));
  CUDA_OK(cudaMemcpyAsync(h2.data(), d2.p, 256, cudaMemcpyDefault, s));
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(std::all_of(h2.begin(), h2.begin() + 64, [](float v) { return v == 1.f; }), "valid copies did not arrive");
  EXPECT_NO_MISUSE();
}

// Allocations are 256-byte aligned and poisoned with 0xff bytes (NaN in fp16, bf16 and fp32).
void check_alloc_align_poison() {
  Stream s;
  for (size_t size : {size_t(1), size_t(3), size_t(255), size_t(1000), size_t(4097), size_t(65536)}) {
    for (bool async : {false, true}) {
      unsigned char* p = nullptr;
      if (async) CUDA_OK(cudaMallocAsync(reinterpret_cast<void**>(&p), size, s));
      else CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&p), size));
      EXPECT(reinterpret_cast<uintptr_t>(p) % 256 == 0,
             "a " << size << "-byte allocation at " << static_cast<void*>(p) << " is not 256-byte aligned");
      std::vector<unsigned char> h(size, 0);
      CUDA_OK(cudaMemcpy(h.data(), p, size, cudaMemcpyDeviceToHost));
      EXPECT(std::all_of(h.begin(), h.end(), [](unsigned char b) { return b == 0xff; }),
             "a fresh " << size << "-byte allocation is not 0xff-poisoned");
      // Written, freed and allocated again: poisoned again, never the old contents.
      CUDA_OK(cudaMemsetAsync(p, 0, size, s));
      CUDA_OK(cudaStreamSynchronize(s));
      CUDA_OK(cudaFree(p));
      CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&p), size));
      CUDA_OK(cudaMemcpy(h.data(), p, size, cudaMemcpyDeviceToHost));
      EXPECT(std::all_of(h.begin(), h.end(), [](unsigned char b) { return b == 0xff; }),
             "a reallocated " << size << "-byte allocation is not poisoned");
      CUDA_OK(cudaFree(p));
    }
  }
  void* z = reinterpret_cast<void*>(1);
  CUDA_OK(cudaMalloc(&z, 0));
  EXPECT(z == nullptr, "cudaMalloc(0) gave " << z);
  EXPECT(std::isnan(float(__ushort_as_half(0xffff))) && std::isnan(bits_float(0xffffffffu)), "the poison is not NaN");
  EXPECT_NO_MISUSE();
}

// cudaFreeAsync releases in stream order; a second free of one allocation is reported.
void check_free_async() {
  Stream s;
  Dev<int> q(64);
  int* p = nullptr;
  CUDA_OK(cudaMalloc(reinterpret_cast<void**>(&p), 64 * sizeof(int)));
  uint64_t live = report(false).live_allocations;
  std::vector<int> src(64, 5);
  CUDA_OK(cudaMemcpyAsync(p, src.data(), 256, cudaMemcpyHostToDevice, s));
  CUDA_OK(cudaMemcpyAsync(q.p, p, 256, cudaMemcpyDeviceToDevice, s));
  PG25_LAUNCH(add_kernel, 1, 64, 0, s)(q.p, 64, 1);
  CUDA_OK(cudaFreeAsync(p, s));
  EXPECT(pg25::emu::is_device_range(p, 256) && report(false).live_allocations == live,
         "cudaFreeAsync released the memory before the work queued ahead of it ran");
  CUDA_IS(cudaFreeAsync(p, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaFreeAsync", "already being freed");
  cudaGetLastError();
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(!pg25::emu::is_device_range(p, 1) && report(false).live_allocations == live - 1,
         "cudaFreeAsync did not release at its place in the stream");
  std::vector<int> h = q.download();
  EXPECT(std::all_of(h.begin(), h.end(), [](int v) { return v == 6; }), "the work before cudaFreeAsync saw " << h[0] << ", want 6");
  CUDA_IS(cudaFree(p), cudaErrorInvalidValue);  // a double free
  EXPECT_MISUSE("cudaFree", "is not the start of a device allocation");
  CUDA_IS(cudaFree(q.p + 4), cudaErrorInvalidValue);  // not the start of one
  EXPECT_MISUSE("cudaFree", "is not the start of a device allocation");
  CUDA_OK(cudaFree(nullptr));
  cudaGetLastError();
  EXPECT_NO_MISUSE();
}

void check_events() {
  Stream s1, s2;
  cudaEvent_t e0, e1, e2, unused;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));
  CUDA_OK(cudaEventCreateWithFlags(&e2, cudaEventDisableTiming));
  CUDA_OK(cudaEventCreate(&unused));
  const int n = 256;
  Dev<int> d(n);
  std::vector<int> src(n, 1), host(n, 0), host_after(n, -1), host2(n, -1);
  CUDA_OK(cudaMemcpyAsync(d.p, src.data(), n * sizeof(int), cudaMemcpyHostToDevice, s1));
  CUDA_OK(cudaEventRecord(e0, s1));
  pg25::emu::enqueue(s1, [] {  // device work that takes a known time
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return std::string();
  });
  PG25_LAUNCH(add_kernel, 1, n, 0, s1)(d.p, n, 1);
  CUDA_OK(cudaMemcpyAsync(host.data(), d.p, n * sizeof(int), cudaMemcpyDeviceToHost, s1));
  CUDA_OK(cudaEventRecord(e1, s1));
  PG25_LAUNCH(add_kernel, 1, n, 0, s1)(d.p, n, 100);
  CUDA_OK(cudaMemcpyAsync(host_after.data(), d.p, n * sizeof(int), cudaMemcpyDeviceToHost, s1));
  float ms = -1.f;
  CUDA_IS(cudaEventElapsedTime(&ms, e0, e1), cudaErrorNotReady);
  cudaGetLastError();
  EXPECT(host[0] == 0, "work ran before any synchronisation");
  // Synchronising on e1 runs the stream up to e1 and no further.
  CUDA_OK(cudaEventSynchronize(e1));
  EXPECT(host[0] == 2 && host[n - 1] == 2, "after cudaEventSynchronize the copy before the event gave " << host[0]);
  EXPECT(host_after[0] == -1, "cudaEventSynchronize ran work queued after the event");
  EXPECT(report(false).queued == 2, report(false).queued << " ops queued after the event, want 2");
  CUDA_OK(cudaEventQuery(e1));
  CUDA_OK(cudaEventQuery(unused));  // never recorded: nothing to wait for
  CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
  EXPECT(ms >= 19.f && ms < 60000.f, "cudaEventElapsedTime over 20 ms of work = " << ms << " ms");
  // s2 waits for e2, recorded on s1 after the rest of s1's work; synchronising s2 alone runs both in order.
  CUDA_OK(cudaEventRecord(e2, s1));
  CUDA_OK(cudaStreamWaitEvent(s2, e2, 0));
  PG25_LAUNCH(scale_kernel, 1, n, 0, s2)(d.p, n, 3);
  CUDA_OK(cudaMemcpyAsync(host2.data(), d.p, n * sizeof(int), cudaMemcpyDeviceToHost, s2));
  CUDA_OK(cudaStreamSynchronize(s2));
  EXPECT(host_after[0] == 102, "s1's work before the event gave " << host_after[0] << ", want 102");
  EXPECT(host2[0] == 306 && host2[n - 1] == 306, "s2's work after cudaStreamWaitEvent gave " << host2[0] << ", want (2 + 100) * 3 = 306");
  CUDA_OK(cudaStreamSynchronize(s1));
  for (cudaEvent_t e : {e0, e1, e2, unused}) CUDA_OK(cudaEventDestroy(e));
  EXPECT_NO_MISUSE();
}

// Capture records launches and copies without running them; each graph launch replays them.
void check_graph_capture() {
  Stream s;
  Dev<int> d(1);
  d.upload({5});
  int host = -1;
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  CUDA_OK(cudaStreamIsCapturing(s, &st));
  EXPECT(st == cudaStreamCaptureStatusActive, "cudaStreamIsCapturing during capture gave " << int(st));
  PG25_LAUNCH(add_kernel, 1, 32, 0, s)(d.p, 1, 1);
  CUDA_OK(cudaMemcpyAsync(&host, d.p, sizeof(int), cudaMemcpyDeviceToHost, s));
  EXPECT(report(false).queued == 0, "captured work was queued on the stream");
  cudaGraph_t graph = nullptr;
  CUDA_OK(cudaStreamEndCapture(s, &graph));
  EXPECT(graph != nullptr, "cudaStreamEndCapture gave no graph");
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(host == -1 && d.download()[0] == 5, "captured work ran during capture (host " << host << ", device " << d.download()[0] << ")");
  cudaGraphExec_t exec = nullptr;
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_OK(cudaGraphLaunch(exec, s));
  CUDA_OK(cudaGraphLaunch(exec, s));
  EXPECT(host == -1, "a graph launch ran before synchronisation");
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(d.download()[0] == 7 && host == 7, "two graph launches gave device " << d.download()[0] << ", host " << host << "; want 7 (+2)");
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  // A host-to-device copy in a graph reads the host memory at each replay, not at capture.
  int value = 1;
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  CUDA_OK(cudaMemcpyAsync(d.p, &value, sizeof(int), cudaMemcpyHostToDevice, s));
  CUDA_OK(cudaStreamEndCapture(s, &graph));
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  value = 42;
  CUDA_OK(cudaGraphLaunch(exec, s));
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(d.download()[0] == 42, "a captured host-to-device copy delivered " << d.download()[0] << ", want the value at replay, 42");
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  EXPECT_NO_MISUSE();
}

// Synchronising a capturing stream is refused and invalidates the capture.
// Memory nodes: allocations a capture makes belong to the graph. One freed within the graph can be
// replayed any number of times, its contents undefined (poisoned) after its free node; one that is
// not freed makes a relaunch fail; an executable graph destroyed while a launch is queued keeps its
// memory until the launch has run (under ASan a use after free would show here).
void check_graph_memory_nodes() {
  Stream s;
  Dev<int> out(2);
  out.upload({0, 0});
  auto record = [&](bool free_inside) {
    int* tmp = nullptr;
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    CUDA_OK(cudaMallocAsync(reinterpret_cast<void**>(&tmp), 2 * sizeof(int), s));
    CUDA_OK(cudaMemsetAsync(tmp, 0, 2 * sizeof(int), s));
    PG25_LAUNCH(add_kernel, 1, 2, 0, s)(tmp, 2, 3);
    CUDA_OK(cudaMemcpyAsync(out.p, tmp, sizeof(int), cudaMemcpyDeviceToDevice, s));
    if (free_inside) CUDA_OK(cudaFreeAsync(tmp, s));
    // Read after the free node: poisoned at each replay, so out[1] cannot hold the 3 written above.
    CUDA_OK(cudaMemcpyAsync(out.p + 1, tmp, sizeof(int), cudaMemcpyDeviceToDevice, s));
    CUDA_OK(cudaStreamEndCapture(s, &graph));
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    return std::make_pair(graph, exec);
  };
  auto [graph, exec] = record(true);
  for (int i = 0; i < 3; i++) CUDA_OK(cudaGraphLaunch(exec, s));
  CUDA_OK(cudaGraphDestroy(graph));  // the executable graph keeps the memory
  CUDA_OK(cudaGraphLaunch(exec, s));
  CUDA_OK(cudaGraphExecDestroy(exec));  // in flight: freed once the launch has run
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<int> got = out.download();
  EXPECT(got[0] == 3, "a replayed graph gave " << got[0] << ", want 3 at every replay");
  EXPECT(got[1] == -1, "a read after the graph's free node gave " << got[1] << ", not the poison");
  auto [held, held_exec] = record(false);
  CUDA_OK(cudaGraphLaunch(held_exec, s));
  CUDA_IS(cudaGraphLaunch(held_exec, s), cudaErrorInvalidValue);
  EXPECT_MISUSE("cudaGraphLaunch", "not freed within the graph");
  cudaGetLastError();
  CUDA_OK(cudaStreamSynchronize(s));
  CUDA_OK(cudaGraphExecDestroy(held_exec));
  CUDA_OK(cudaGraphDestroy(held));
  CUDA_OK(cudaDeviceGraphMemTrim(0));
  EXPECT(report(false).live_allocations == 1,
         "graph memory outlived its graphs: " << report(false).live_allocations << " allocations live, want 1");
  EXPECT_NO_MISUSE();
}

void check_capture_sync_invalidates() {
  Stream s;
  Dev<int> d(1);
  d.upload({10});
  CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  PG25_LAUNCH(add_kernel, 1, 32, 0, s)(d.p, 1, 1);
  CUDA_IS(cudaStreamSynchronize(s), cudaErrorStreamCaptureUnsupported);
  EXPECT_MISUSE("cudaStreamSynchronize", "during stream capture");
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  CUDA_OK(cudaStreamIsCapturing(s, &st));
  EXPECT(st == cudaStreamCaptureStatusInvalidated, "capture status after the synchronise: " << int(st) << ", want invalidated");
  cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(1);
  CUDA_IS(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
  EXPECT(graph == nullptr, "an invalidated capture gave a graph");
  cudaGetLastError();
  // The stream works normally afterwards; the captured launch never ran.
  PG25_LAUNCH(add_kernel, 1, 32, 0, s)(d.p, 1, 1);
  CUDA_OK(cudaStreamSynchronize(s));
  EXPECT(d.download()[0] == 11, "after the invalidated capture the value is " << d.download()[0] << ", want 11");
  EXPECT_NO_MISUSE();
}

// PG25_EMU_DEVICE_MEMORY sets the capacity; running out is an error the caller handles, not misuse.
void check_out_of_memory() {
  EXPECT(report(false).live_bytes == 0, "allocations left over before the check: " << report(false).live_bytes << " bytes");
  setenv("PG25_EMU_DEVICE_MEMORY", "1048576", 1);
  size_t free_b = 0, total = 0;
  CUDA_OK(cudaMemGetInfo(&free_b, &total));
  EXPECT(total == 1048576 && free_b == 1048576, "cudaMemGetInfo: free " << free_b << ", total " << total << "; want 1048576 both");
  void* p = reinterpret_cast<void*>(1);
  CUDA_IS(cudaMalloc(&p, 2 << 20), cudaErrorMemoryAllocation);
  EXPECT(p == nullptr, "a failed cudaMalloc left " << p);
  CUDA_IS(cudaGetLastError(), cudaErrorMemoryAllocation);
  void* a = nullptr;
  CUDA_OK(cudaMalloc(&a, 768 << 10));
  CUDA_OK(cudaMemGetInfo(&free_b, &total));
  EXPECT(free_b == 256u << 10, "cudaMemGetInfo free after 768 KiB: " << free_b);
  void* b = nullptr;
  CUDA_IS(cudaMalloc(&b, 512 << 10), cudaErrorMemoryAllocation);
  {
    Stream s;
    CUDA_IS(cudaMallocAsync(&b, 512 << 10, s), cudaErrorMemoryAllocation);
  }
  CUDA_OK(cudaFree(a));
  CUDA_OK(cudaMalloc(&b, 1 << 20));  // exactly the capacity
  CUDA_OK(cudaFree(b));
  cudaGetLastError();
  unsetenv("PG25_EMU_DEVICE_MEMORY");
  CUDA_OK(cudaMemGetInfo(&free_b, &total));
  EXPECT(total == size_t(80) << 30, "without PG25_EMU_DEVICE_MEMORY the capacity is " << total);
  EXPECT_NO_MISUSE();
}

void check_destroyed_stream() {
  Dev<int> d(4);
  std::vector<int> src{1, 2, 3, 4}, host(4, 0);
  cudaStream_t s = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CUDA_OK(cudaMemcpyAsync(d.p, src.data(), 16, cudaMemcpyHostToDevice, s));
  CUDA_OK(cudaMemcpyAsync(host.data(), d.p, 16, cudaMemcpyDeviceToHost, s));
  CUDA_OK(cudaStreamDestroy(s));
  EXPECT(host == src, "work queued before cudaStreamDestroy did not complete");
  // No stream is created from here on, so the handle cannot name a new one.
  CUDA_IS(cudaMemcpyAsync(d.p, src.data(), 16, cudaMemcpyHostToDevice, s), cudaErrorInvalidResourceHandle);
  EXPECT_MISUSE("cudaMemcpyAsync", "not a live stream");
  PG25_LAUNCH(add_kernel, 1, 4, 0, s)(d.p, 4, 1);
  CUDA_IS(cudaGetLastError(), cudaErrorInvalidResourceHandle);
  EXPECT_MISUSE("add_kernel", "not a live stream");
  CUDA_IS(cudaStreamSynchronize(s), cudaErrorInvalidResourceHandle);
  EXPECT_MISUSE("cudaStreamSynchronize", "not a live stream");
  CUDA_IS(cudaStreamDestroy(s), cudaErrorInvalidResourceHandle);
  EXPECT_MISUSE("cudaStreamDestroy", "not a live stream");
  cudaGetLastError();
  EXPECT(d.download() == src, "a launch or copy on the destroyed stream ran");
  EXPECT_NO_MISUSE();
}

// CUDA keeps the current device per host thread, and work for a stream must be issued with the
// stream's device current: the multi-GPU backend relies on the emulation reporting it otherwise.
void check_devices_per_thread() {
  setenv("PG25_EMU_DEVICES", "2", 1);
  int count = 0, dev = -1;
  CUDA_OK(cudaGetDeviceCount(&count));
  EXPECT(count == 2, "PG25_EMU_DEVICES=2 gave " << count << " devices");
  CUDA_IS(cudaSetDevice(2), cudaErrorInvalidDevice);
  EXPECT_MISUSE("cudaSetDevice(2)");
  cudaGetLastError();
  CUDA_OK(cudaSetDevice(1));
  std::thread([&] { cudaGetDevice(&dev); }).join();
  EXPECT(dev == 0, "a new thread starts on device " << dev << ", not 0");
  cudaStream_t s1 = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));  // a stream of device 1
  Dev<int> d(4);
  std::vector<int> zeros(4, 0);
  CUDA_OK(cudaMemcpy(d.p, zeros.data(), 16, cudaMemcpyHostToDevice));
  PG25_LAUNCH(add_kernel, 1, 4, 0, s1)(d.p, 4, 1);
  CUDA_OK(cudaGetLastError());
  std::thread([&] {
    PG25_LAUNCH(add_kernel, 1, 4, 0, s1)(d.p, 4, 10);  // device 0 current here
    dev = int(cudaGetLastError());
  }).join();
  EXPECT(dev == int(cudaErrorInvalidResourceHandle), "a launch on another device's stream returned " << cudaGetErrorName(cudaError_t(dev)));
  EXPECT_MISUSE("add_kernel", "stream of device 1", "device 0 is current");
  CUDA_OK(cudaStreamSynchronize(s1));
  EXPECT(d.download() == std::vector<int>(4, 1), "the wrong-device launch ran, or the right one did not");
  CUDA_OK(cudaStreamDestroy(s1));
  CUDA_OK(cudaSetDevice(0));
  unsetenv("PG25_EMU_DEVICES");
  EXPECT_NO_MISUSE();
}

void check_old_driver() {
  setenv("PG25_EMU_DRIVER_VERSION", "12080", 1);
  int count = -1, version = 0;
  CUDA_IS(cudaGetDeviceCount(&count), cudaErrorInsufficientDriver);
  EXPECT(count == 0, "with an old driver cudaGetDeviceCount gave " << count << " devices");
  CUDA_OK(cudaDriverGetVersion(&version));
  EXPECT(version == 12080, "cudaDriverGetVersion gave " << version);
  unsetenv("PG25_EMU_DRIVER_VERSION");
  CUDA_OK(cudaGetDeviceCount(&count));
  EXPECT(count == 1, "cudaGetDeviceCount gave " << count);
  setenv("PG25_EMU_DEVICES", "0", 1);
  CUDA_IS(cudaGetDeviceCount(&count), cudaErrorNoDevice);
  unsetenv("PG25_EMU_DEVICES");
  cudaGetLastError();
  EXPECT_NO_MISUSE();
}

// An invalid launch configuration is a launch error read with cudaGetLastError; nothing runs.
void check_launch_config() {
  Stream s;
  Dev<int> d(32);
  CUDA_OK(cudaMemsetAsync(d.p, 0, 32 * sizeof(int), s));
  struct Bad {
    dim3 grid, block;
  };
  const Bad bad[] = {{dim3(1), dim3(1025)}, {dim3(1), dim3(32, 32, 2)}, {dim3(1), dim3(1, 1, 65)},
                     {dim3(1), dim3(0)},    {dim3(0), dim3(32)},        {dim3(1, 65536), dim3(32)}};
  for (const Bad& b : bad) {
    PG25_LAUNCH(add_kernel, b.grid, b.block, 0, s)(d.p, 32, 1000);
    CUDA_IS(cudaGetLastError(), cudaErrorInvalidConfiguration);
    CUDA_OK(cudaGetLastError());  // read once, then cleared
    EXPECT_MISUSE("launch of add_kernel");
  }
  EXPECT(report(false).queued == 1, "an invalid launch was queued");  // only the memset
  PG25_LAUNCH(add_kernel, 1, 1024, 0, s)(d.p, 32, 1);                 // the largest block is fine
  PG25_LAUNCH(add_kernel, dim3(2, 1, 1), dim3(16, 1, 1), 0, s)(d.p, 32, 1);
  CUDA_OK(cudaGetLastError());
  CUDA_OK(cudaStreamSynchronize(s));
  std::vector<int> h = d.download();
  EXPECT(std::all_of(h.begin(), h.end(), [](int v) { return v == 2; }), "after the valid launches d[0] = " << h[0] << ", want 2");
  EXPECT_NO_MISUSE();
}

// The report is read while other threads use streams (the addon's tests read it between jobs that
// run on libuv's threads): reading it while a capturing stream is misused must not deadlock.
void check_report_concurrent() {
  Stream s;
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop.load()) report(false);
  });
  const uint64_t rounds = 50000;  // report() taking the locks in the opposite order hung within 20000 of these
  for (uint64_t i = 0; i < rounds; i++) {
    cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
    cudaStreamSynchronize(s);  // refused during capture: noted as misuse with the stream's lock held
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(s, &g);
  }
  stop = true;
  reader.join();
  pg25::emu::Report r = report(true);
  EXPECT(r.misuse_count == rounds, r.misuse_count << " misuse notes, want " << rounds);
  cudaGetLastError();
}

}  // namespace

std::vector<Check> cudart_checks() {
  return {
      {"cudart_streams_deferred", check_stream_deferred},
      {"cudart_memcpy2d", check_memcpy2d},
      {"cudart_copy_validation", check_copy_validation},
      {"cudart_alloc_align_poison", check_alloc_align_poison},
      {"cudart_free_async", check_free_async},
      {"cudart_events", check_events},
      {"cudart_graph_capture", check_graph_capture},
      {"cudart_graph_memory_nodes", check_graph_memory_nodes},
      {"cudart_capture_sync_invalidates", check_capture_sync_invalidates},
      {"cudart_out_of_memory", check_out_of_memory},
      {"cudart_destroyed_stream", check_destroyed_stream},
      {"cudart_old_driver", check_old_driver},
      {"cudart_devices_per_thread", check_devices_per_thread},
      {"cudart_invalid_launch_config", check_launch_config},
      {"cudart_report_concurrent", check_report_concurrent},
  };
}

}  // namespace selftest
