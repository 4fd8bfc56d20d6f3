// Cooperative contexts for the SIMT layer: each emulated GPU thread runs on its own small stack and
// gives the CPU back at barriers. x86-64 switches with a few instructions; other CPUs use ucontext.
// Switches are announced to AddressSanitizer so that the asan build checks kernels too.
#pragma once
#include <cstddef>

namespace pg25::emu {

struct Context {
  void* sp = nullptr;  // saved stack pointer (x86-64) or ucontext_t* (elsewhere)
  const void* stack = nullptr;
  size_t stack_size = 0;
  void* fake_stack = nullptr;  // AddressSanitizer's bookkeeping while switched out
};

// Prepares `c` to start entry(arg) on [stack, stack + size) when first switched to. entry must
// never return: it ends with switch_final().
void make_context(Context& c, char* stack, size_t size, void (*entry)(void*), void* arg);
// Saves the running context in `from` and resumes `to`; returns when something switches back.
void switch_to(Context& from, Context& to);
// Leaves a finished context for good.
[[noreturn]] void switch_final(Context& from, Context& to);
// First thing a new context does: tells AddressSanitizer the switch has completed, and records the
// stack it came from in `origin` (so the scheduler's own stack is known).
void context_started(Context& origin);

}  // namespace pg25::emu
