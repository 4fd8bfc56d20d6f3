// Function multiversioning for the CPU backend's loops: each function so marked is compiled for
// AVX-512, x86-64-v3 (AVX2/FMA) and the baseline, and the loader picks the clone for the processor.
// Elsewhere (not x86, or Windows, whose PE format has no ifunc) it is one ordinary function.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(_WIN32)
#define PG25_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define PG25_CLONES
#endif
