#include "isa.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(PG25_X86) && defined(_MSC_VER)
#include <intrin.h>
#elif defined(PG25_X86)
#include <cpuid.h>
#endif

#include "../platform/env.h"

namespace pg25::cpu {
namespace {

#ifdef PG25_X86
struct Regs {
  uint32_t a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(uint32_t leaf, uint32_t sub) {
  Regs r;
#ifdef _MSC_VER
  int v[4];
  __cpuidex(v, int(leaf), int(sub));
  r = {uint32_t(v[0]), uint32_t(v[1]), uint32_t(v[2]), uint32_t(v[3])};
#else
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
#endif
  return r;
}

// XCR0: which register states the OS saves on a context switch (AVX needs ymm, AVX-512 also zmm/k).
uint64_t xcr0() {
#ifdef _MSC_VER
  return _xgetbv(0);
#else
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return lo | (uint64_t(hi) << 32);
#endif
}

CpuFeatures detect() {
  CpuFeatures f;
  uint32_t max_leaf = cpuid(0, 0).a;
  Regs l1 = cpuid(1, 0);
  bool osxsave = l1.c >> 27 & 1, avx = l1.c >> 28 & 1, fma = l1.c >> 12 & 1;
  if (!osxsave || !avx || max_leaf < 7) return f;
  uint64_t x = xcr0();
  bool ymm = (x & 0x6) == 0x6, zmm = (x & 0xe6) == 0xe6;
  if (!ymm) return f;
  Regs l7 = cpuid(7, 0);
  f.f16c = l1.c >> 29 & 1;
  f.avx2_fma = (l7.b >> 5 & 1) && fma;
  f.avx512f = f.avx2_fma && zmm && (l7.b >> 16 & 1);
  // AVX512-BF16 is in leaf 7 subleaf 1 (EAX bit 5); the kernels also use AVX512BW/VL instructions.
  bool bw_vl = (l7.b >> 30 & 1) && (l7.b >> 31 & 1);
  f.avx512bf16 = f.avx512f && bw_vl && l7.a >= 1 && (cpuid(7, 1).a >> 5 & 1);
  return f;
}
#else
CpuFeatures detect() { return {}; }
#endif

struct Choice {
  Isa isa;
  bool bf16_dot;
};

Choice choose() {
  const CpuFeatures& f = cpu_features();
  const char* want = platform::env("PG25_CPU_ISA");
  Isa best = f.avx512f ? Isa::Avx512 : f.avx2_fma ? Isa::Avx2 : Isa::Generic;
  bool bf16 = f.avx512bf16;
  if (want && std::strcmp(want, "generic") == 0) best = Isa::Generic;
  else if (want && std::strcmp(want, "avx2") == 0 && best > Isa::Avx2) best = Isa::Avx2;
  else if (want && std::strcmp(want, "avx512") == 0) bf16 = false;
  return {best, bf16 && best == Isa::Avx512};
}

const Choice& choice() {
  static const Choice c = choose();
  return c;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

Isa cpu_isa() { return choice().isa; }
bool cpu_bf16_dot() { return choice().bf16_dot; }

const char* cpu_isa_name() {
  if (cpu_bf16_dot()) return "avx512bf16";
  switch (cpu_isa()) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "generic";
  }
}

}  // namespace pg25::cpu
