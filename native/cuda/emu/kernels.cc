// The CUDA kernels, compiled as host C++ for the emulation build.
#include "../kernels.cu"
