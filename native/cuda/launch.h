// One spelling for kernel launches: `<<<>>>` under nvcc, the SIMT layer's launcher in the CPU
// emulation (native/cuda/emu), so the same kernel sources build both ways.
#pragma once

#ifdef PG25_CUDA_EMULATION
#define PG25_LAUNCH(kernel, grid, block, shared, stream) ::pg25::emu::launch(kernel, #kernel, grid, block, shared, stream)
#else
#define PG25_LAUNCH(kernel, grid, block, shared, stream) kernel<<<grid, block, shared, stream>>>
#endif
