// The attention kernels, compiled as host C++ for the emulation build.
#include "../attention.cu"
