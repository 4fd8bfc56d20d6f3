// Where a backend's time goes, per op (PG25_PROFILE=1 when an engine opens): every op passes one
// dispatch point (Backend's public calls, backend.h), which marks the queued work before and after it
// while profiling is on; the marks are resolved into milliseconds only when the profile is taken, so
// the host never waits per op. Recording is off meanwhile (make_recorder gives none): each op's kernels
// run where they can be timed.
#include <map>
#include <mutex>

#include "backend.h"

namespace pg25 {

struct Backend::Profile {
  struct Span {
    const char* op;
    std::unique_ptr<Mark> begin, end;
  };
  std::mutex mu;  // jobs on several threads add spans at once
  std::vector<Span> spans;
};

namespace {
// How deep this thread is in ops of profiled backends: an op another op calls is part of the outer one.
thread_local int tl_depth = 0;
}  // namespace

void Backend::enable_profiling() { profiling_ = std::make_shared<Profile>(); }

Backend::OpScope::OpScope(Backend& be, const char* op) : be_(be), op_(op), uncaught_(std::uncaught_exceptions()) {
  if (!be_.profiling_) return;
  if (tl_depth++ == 0) begin_ = be_.mark();
}

Backend::OpScope::~OpScope() {
  if (!be_.profiling_) return;
  --tl_depth;
  if (!begin_ || std::uncaught_exceptions() > uncaught_) return;
  Profile::Span s{op_, std::move(begin_), be_.mark()};
  std::lock_guard<std::mutex> lock(be_.profiling_->mu);
  be_.profiling_->spans.push_back(std::move(s));
}

// Waits for the queued work, then resolves every pair of marks taken since the last call.
std::vector<std::pair<std::string, OpTotal>> Backend::take_profile() {
  if (!profiling_) return {};
  synchronize();
  std::vector<Profile::Span> spans;
  {
    std::lock_guard<std::mutex> lock(profiling_->mu);
    spans.swap(profiling_->spans);
  }
  std::map<std::string, OpTotal> totals;
  for (const Profile::Span& s : spans) {
    OpTotal& t = totals[s.op];
    t.calls++;
    t.ms += elapsed_ms(*s.begin, *s.end);
  }
  return {totals.begin(), totals.end()};
}

}  // namespace pg25
