// Where a backend's time goes, per op (PG25_PROFILE=1 when an engine opens): a decorator that forwards
// every op to the backend it wraps and marks the queued work before and after each, the marks resolved
// into milliseconds only when the profile is taken (so the host never waits per op). Recording is off
// while profiling (make_recorder gives none): each op's kernels run where they can be timed.
#pragma once
#include <memory>

#include "backend.h"

namespace pg25 {

std::unique_ptr<Backend> make_profiling_backend(std::shared_ptr<Backend> inner);

}  // namespace pg25
