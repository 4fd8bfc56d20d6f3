#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "../platform/env.h"

namespace pg25::cpu {
namespace {

class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 1; i < n; i++) workers_.emplace_back([this] { loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return int(workers_.size()) + 1; }

  // Runs task(i) for i in [0, ntasks) on all threads; returns when every task is done. The caller takes
  // tasks too and waits only for the workers that joined in: one that the OS has not scheduled yet (a
  // loaded machine) does not hold the call up, it finds the run closed when it wakes.
  void run(int64_t ntasks, const std::function<void(int64_t)>& task) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock() || workers_.empty()) {
      for (int64_t i = 0; i < ntasks; i++) task(i);
      return;
    }
    {
      std::lock_guard<std::mutex> g(m_);
      task_ = &task;
      ntasks_ = ntasks;
      next_.store(0);
      open_ = true;
      generation_++;
    }
    cv_.notify_all();
    drain();
    std::unique_lock<std::mutex> g(m_);
    open_ = false;
    done_cv_.wait(g, [this] { return joined_ == 0; });
    task_ = nullptr;
  }

 private:
  void drain() {
    for (;;) {
      int64_t i = next_.fetch_add(1);
      if (i >= ntasks_) break;
      (*task_)(i);
    }
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> g(m_);
        cv_.wait(g, [&] { return stop_ || (open_ && generation_ != seen); });
        if (stop_) return;
        seen = generation_;
        joined_++;
      }
      drain();
      std::lock_guard<std::mutex> g(m_);
      if (--joined_ == 0 && !open_) done_cv_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex m_, busy_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t)>* task_ = nullptr;
  int64_t ntasks_ = 0;
  std::atomic<int64_t> next_{0};
  int joined_ = 0;     // workers in the current run
  bool open_ = false;  // whether workers may still join it
  uint64_t generation_ = 0;
  bool stop_ = false;
};

int configured_threads() {
  if (const char* s = platform::env("PG25_THREADS")) {
    int n = std::atoi(s);
    if (n >= 1 && n <= 1024) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

Pool& pool() {
#ifdef _WIN32
  // Never destroyed: by the time a DLL's static destructors run at exit, Windows has already ended the
  // other threads, and joining them there never returns.
  static Pool& p = *new Pool(configured_threads());
#else
  static Pool p(configured_threads());
#endif
  return p;
}

}  // namespace

int thread_count() { return pool().size(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  int64_t max_chunks = (n + grain - 1) / grain;
  int64_t chunks = std::min<int64_t>(max_chunks, int64_t(thread_count()) * 4);
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  int64_t step = (n + chunks - 1) / chunks;
  pool().run(chunks, [&](int64_t c) {
    int64_t b = c * step, e = std::min(n, b + step);
    if (b < e) fn(b, e);
  });
}

}  // namespace pg25::cpu
