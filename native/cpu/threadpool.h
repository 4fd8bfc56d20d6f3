// A fixed pool of worker threads for the CPU backend. PG25_THREADS overrides the count. A call made
// while another parallel_for holds the pool (a second pipeline, a nested call) runs on its own thread
// rather than waiting, so concurrent generate() calls never deadlock.
#pragma once
#include <cstdint>
#include <functional>

namespace pg25::cpu {

int thread_count();
// Runs fn(begin, end) over [0, n) split into contiguous chunks of at least `grain` items.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace pg25::cpu
