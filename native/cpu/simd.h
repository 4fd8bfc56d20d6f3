// The x86 intrinsics the CPU kernels' vector code uses (compiled per function with PG25_TARGET, isa.h).
#pragma once
#include "isa.h"

#ifdef PG25_X86
#include <immintrin.h>
#endif

// GCC 12 warns about the undefined vector its own AVX-512 intrinsics start from (a false positive); the
// pragma holds for the rest of each file that includes this.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
