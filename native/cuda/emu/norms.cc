// The normalisation kernels, compiled as host C++ for the emulation build.
#include "../norms.cu"
