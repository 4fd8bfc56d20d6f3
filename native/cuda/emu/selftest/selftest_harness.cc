// The state behind selftest.h's EXPECT and friends: the failures of the running check.
#include "selftest.h"

namespace selftest {

namespace {
std::vector<std::string> g_failures;  // the first few, with their line
int g_failure_count = 0;
std::string g_skip;
}  // namespace

void note_failure(int line, const std::string& what) {
  g_failure_count++;
  if (g_failures.size() < 8) g_failures.push_back("line " + std::to_string(line) + ": " + what);
}

void skip(const std::string& why) { g_skip = why; }

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " | ") + x;
  return s;
}

void expect_misuse(int line, std::initializer_list<const char*> parts) {
  pg25::emu::Report r = report(true);
  for (const auto& m : r.misuse) {
    bool all = true;
    for (const char* p : parts) all = all && m.find(p) != std::string::npos;
    if (all) return;
  }
  std::string want;
  for (const char* p : parts) want += std::string(want.empty() ? "" : " + ") + "\"" + p + "\"";
  note_failure(line, "expected misuse naming " + want + ", got: " + (r.misuse.empty() ? "none" : join(r.misuse)));
}

void begin_check() {
  g_failures.clear();
  g_failure_count = 0;
  g_skip.clear();
}

bool print_outcome(const char* name) {
  if (g_failure_count) {
    std::string msg = "FAIL " + std::string(name) + ": " + join(g_failures);
    if (g_failure_count > int(g_failures.size())) msg += " (" + std::to_string(g_failure_count) + " failures in all)";
    std::printf("%s\n", msg.c_str());
  } else if (!g_skip.empty()) {
    std::printf("skip %s: %s\n", name, g_skip.c_str());
  } else {
    std::printf("ok %s\n", name);
  }
  std::fflush(stdout);
  return g_failure_count == 0;
}

}  // namespace selftest
