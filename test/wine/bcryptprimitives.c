// Test-only stand-in for Windows 10's bcryptprimitives.dll, which Wine 8 lacks and sharp's win32 build
// (libvips) imports for ProcessPrng. Built by scripts/wine-job.sh into the Wine prefix's system32; never
// shipped. RtlGenRandom is advapi32's SystemFunction036.
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
  while (length > 0) {
    ULONG n = length > 0x40000000 ? 0x40000000 : (ULONG)length;
    if (!SystemFunction036(data, n)) return FALSE;
    data += n;
    length -= n;
  }
  return TRUE;
}
