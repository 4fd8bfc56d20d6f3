// Self-test of the CUDA emulation itself (native/cuda/emu): fp16/bf16 rounding against independent
// references (selftest_numbers.cc), SIMT semantics of kernels launched through PG25_LAUNCH and failure
// detection — a kernel that would hang or misbehave on a GPU is a reported failure here, never a hang
// (selftest_simt.cc) —, the cudart stand-in's stream, memory, event and graph semantics
// (selftest_cudart.cc), and the cuBLASLt stand-in against a double-precision reference
// (selftest_cublaslt.cc). The emulation is what our CUDA backend's tests trust, so it gets tests of its own.
//
// Each check prints `ok NAME`, `skip NAME: why` (only where the machine lacks what it needs) or
// `FAIL NAME: details`; the exit status is 1 if any check failed. `pg25_emu_selftest NAME...` runs only
// the checks named. test/cuda-emulation-selftest.test.ts runs it and expects every check by name.
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <set>

#include "selftest.h"

using namespace selftest;

namespace {

const char* volatile g_check = "startup";

void on_alarm(int) {
  // A hang is a failure of the emulation's promise: say which check hung, then give up.
  const char* a = "FAIL ";
  const char* b = ": watchdog: no progress in 60 s (the emulation hung)\n";
  ssize_t rc = write(1, a, strlen(a));
  rc = write(1, g_check, strlen(g_check));
  rc = write(1, b, strlen(b));
  (void)rc;
  _exit(1);
}

// Runs one check between clean states: the report reset before, and after it no unexpected misuse,
// no work left queued, no allocation leaked.
bool run_check(const Check& c) {
  g_check = c.name;
  begin_check();
  cudaGetLastError();
  pg25::emu::Report before = report(true);
  alarm(60);
  try {
    c.fn();
  } catch (const std::exception& e) {
    note_failure(0, std::string("exception: ") + e.what());
  }
  cudaDeviceSynchronize();
  pg25::emu::Report after = report(true);
  alarm(0);
  if (after.misuse_count) note_failure(0, "misuse left unexamined: " + join(after.misuse));
  if (after.queued) note_failure(0, std::to_string(after.queued) + " ops left queued");
  if (after.live_allocations != before.live_allocations)
    note_failure(0,
                 "live allocations went from " + std::to_string(before.live_allocations) + " to " + std::to_string(after.live_allocations));
  return print_outcome(c.name);
}

}  // namespace

int main(int argc, char** argv) {
  // Settings the checks depend on come from the checks, not from the caller's environment.
  for (const char* v : {"PG25_EMU_DEVICE_MEMORY", "PG25_EMU_DRIVER_VERSION", "PG25_EMU_DEVICES", "PG25_EMU_VERBOSE"}) unsetenv(v);
  setenv("PG25_THREADS", "4", 0);  // blocks on several CPU threads even on a one-core machine
  signal(SIGALRM, on_alarm);
  std::set<std::string> only(argv + 1, argv + argc);
  int failed = 0, ran = 0;
  for (const auto& checks : {number_checks(), simt_checks(), tile_checks(), cudart_checks(), cublaslt_checks()})
    for (const Check& c : checks) {
      if (!only.empty() && !only.count(c.name)) continue;
      ran++;
      failed += !run_check(c);
    }
  if (ran == 0) {
    std::printf("FAIL selection: no check is named %s\n", argc > 1 ? argv[1] : "");
    return 1;
  }
  std::printf("%d of %d checks passed\n", ran - failed, ran);
  return failed ? 1 : 0;
}
