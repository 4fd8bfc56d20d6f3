#include "fiber.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__)
#define PG25_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PG25_ASAN 1
#endif
#endif
#ifdef PG25_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace pg25::emu {
namespace {

void before_switch(Context& from, const Context& to, bool final) {
#ifdef PG25_ASAN
  __sanitizer_start_switch_fiber(final ? nullptr : &from.fake_stack, to.stack, to.stack_size);
#else
  (void)from, (void)to, (void) final;
#endif
}
void after_switch(Context& self) {
#ifdef PG25_ASAN
  __sanitizer_finish_switch_fiber(self.fake_stack, nullptr, nullptr);
#else
  (void)self;
#endif
}

}  // namespace

void context_started(Context& origin) {
#ifdef PG25_ASAN
  const void* bottom = nullptr;
  size_t size = 0;
  __sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
  origin.stack = bottom;
  origin.stack_size = size;
#else
  (void)origin;
#endif
}

#if defined(__x86_64__) && defined(_WIN32)

extern "C" void pg25_emu_switch(void** save_sp, void* load_sp);
extern "C" void pg25_emu_trampoline();
// The Windows x64 twin: rdi, rsi and xmm6-15 are callee-saved there too, and the thread block's stack
// bounds (gs:8 base, gs:16 limit) follow the stack, since the SEH unwinder checks frames against them.
// Layout from the saved sp: mxcsr and x87 control word, xmm6-15, limit, base, r15..r12, rsi, rdi, rbx,
// rbp, return address. A new context starts in the trampoline, which calls entry (r12) with arg (rbx).
asm(R"(
  .text
  .globl pg25_emu_switch
pg25_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %rdi
  pushq %rsi
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  pushq %gs:8
  pushq %gs:16
  subq $168, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movups %xmm6, 8(%rsp)
  movups %xmm7, 24(%rsp)
  movups %xmm8, 40(%rsp)
  movups %xmm9, 56(%rsp)
  movups %xmm10, 72(%rsp)
  movups %xmm11, 88(%rsp)
  movups %xmm12, 104(%rsp)
  movups %xmm13, 120(%rsp)
  movups %xmm14, 136(%rsp)
  movups %xmm15, 152(%rsp)
  movq %rsp, (%rcx)
  movq %rdx, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  movups 8(%rsp), %xmm6
  movups 24(%rsp), %xmm7
  movups 40(%rsp), %xmm8
  movups 56(%rsp), %xmm9
  movups 72(%rsp), %xmm10
  movups 88(%rsp), %xmm11
  movups 104(%rsp), %xmm12
  movups 120(%rsp), %xmm13
  movups 136(%rsp), %xmm14
  movups 152(%rsp), %xmm15
  addq $168, %rsp
  popq %gs:16
  popq %gs:8
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rsi
  popq %rdi
  popq %rbx
  popq %rbp
  ret

  .globl pg25_emu_trampoline
pg25_emu_trampoline:
  movq %rbx, %rcx
  subq $32, %rsp
  callq *%r12
  ud2
)");

void make_context(Context& c, char* stack, size_t size, void (*entry)(void*), void* arg) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15);
  auto* sp = reinterpret_cast<uint64_t*>(top - 256);  // the trampoline then starts with a 16-byte aligned stack
  std::memset(sp, 0, 256);
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  std::memcpy(sp, &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
  sp[21] = reinterpret_cast<uint64_t>(stack);  // stack limit
  sp[22] = top;                                // stack base
  sp[26] = reinterpret_cast<uint64_t>(entry);  // r12
  sp[29] = reinterpret_cast<uint64_t>(arg);    // rbx
  sp[31] = reinterpret_cast<uint64_t>(&pg25_emu_trampoline);
  c.sp = sp;
  c.stack = stack;
  c.stack_size = size;
}

#elif defined(__x86_64__)

extern "C" void pg25_emu_switch(void** save_sp, void* load_sp);
extern "C" void pg25_emu_trampoline();
// Saves the callee-saved registers and the SSE/x87 control words on the old stack, swaps stack
// pointers, restores them from the new one. A new context starts in the trampoline, which calls
// entry (r12) with arg (rbx).
asm(R"(
  .text
  .globl pg25_emu_switch
  .hidden pg25_emu_switch
  .type pg25_emu_switch,@function
pg25_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size pg25_emu_switch,.-pg25_emu_switch

  .globl pg25_emu_trampoline
  .hidden pg25_emu_trampoline
  .type pg25_emu_trampoline,@function
pg25_emu_trampoline:
  movq %rbx, %rdi
  callq *%r12
  ud2
  .size pg25_emu_trampoline,.-pg25_emu_trampoline
)");

void make_context(Context& c, char* stack, size_t size, void (*entry)(void*), void* arg) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15);
  auto* sp = reinterpret_cast<uint64_t*>(top - 80);  // the trampoline then starts with a 16-byte aligned stack
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  sp[0] = 0;
  std::memcpy(sp, &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
  sp[1] = sp[2] = sp[3] = 0;                  // r15, r14, r13
  sp[4] = reinterpret_cast<uint64_t>(entry);  // r12
  sp[5] = reinterpret_cast<uint64_t>(arg);    // rbx
  sp[6] = 0;                                  // rbp
  sp[7] = reinterpret_cast<uint64_t>(&pg25_emu_trampoline);
  c.sp = sp;
  c.stack = stack;
  c.stack_size = size;
}

#endif
#if defined(__x86_64__)

void switch_to(Context& from, Context& to) {
  before_switch(from, to, false);
  pg25_emu_switch(&from.sp, to.sp);
  after_switch(from);
}

void switch_final(Context& from, Context& to) {
  before_switch(from, to, true);
  pg25_emu_switch(&from.sp, to.sp);
  std::abort();
}

#else

namespace {
uintptr_t join(unsigned hi, unsigned lo) { return (uintptr_t(hi) << 16 << 16) | lo; }
void start(unsigned entry_hi, unsigned entry_lo, unsigned arg_hi, unsigned arg_lo) {
  auto entry = reinterpret_cast<void (*)(void*)>(join(entry_hi, entry_lo));
  entry(reinterpret_cast<void*>(join(arg_hi, arg_lo)));
}
ucontext_t* uc(Context& c) {
  if (!c.sp) c.sp = new ucontext_t();
  return static_cast<ucontext_t*>(c.sp);
}
}  // namespace

// makecontext passes int arguments only: the pointers go over as 32-bit halves.
void make_context(Context& c, char* stack, size_t size, void (*entry)(void*), void* arg) {
  ucontext_t* u = uc(c);
  getcontext(u);
  u->uc_stack.ss_sp = stack;
  u->uc_stack.ss_size = size;
  u->uc_link = nullptr;
  auto e = reinterpret_cast<uintptr_t>(entry), a = reinterpret_cast<uintptr_t>(arg);
  makecontext(u, reinterpret_cast<void (*)()>(start), 4, unsigned(e >> 16 >> 16), unsigned(e), unsigned(a >> 16 >> 16), unsigned(a));
  c.stack = stack;
  c.stack_size = size;
}

void switch_to(Context& from, Context& to) {
  before_switch(from, to, false);
  swapcontext(uc(from), uc(to));
  after_switch(from);
}

void switch_final(Context& from, Context& to) {
  before_switch(from, to, true);
  swapcontext(uc(from), uc(to));
  std::abort();
}

#endif

}  // namespace pg25::emu
