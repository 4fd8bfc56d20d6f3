#include "memory.h"

#include <cstdlib>

#ifdef _WIN32
#include <malloc.h>
#include <windows.h>
#else
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace pg25::platform {

#ifdef _WIN32

void* aligned_allocate(size_t alignment, size_t bytes) { return _aligned_malloc(bytes, alignment); }
void aligned_release(void* p) { _aligned_free(p); }
void return_free_memory() { _heapmin(); }

size_t page_size() {
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  return si.dwPageSize;
}

char* reserve_guarded_slots(size_t count, size_t slot) {
  // Reserved, then committed slot by slot: committed pages count against the commit limit, not RAM,
  // until they are touched.
  auto* p = static_cast<char*>(VirtualAlloc(nullptr, count * slot, MEM_RESERVE, PAGE_NOACCESS));
  if (!p) return nullptr;
  size_t page = page_size();
  for (size_t i = 0; i < count; i++) {
    if (!VirtualAlloc(p + slot * i + page, slot - page, MEM_COMMIT, PAGE_READWRITE)) {
      VirtualFree(p, 0, MEM_RELEASE);
      return nullptr;
    }
  }
  return p;
}

void release_slots(char* p, size_t, size_t) { VirtualFree(p, 0, MEM_RELEASE); }

#else

void* aligned_allocate(size_t alignment, size_t bytes) {
  void* p = nullptr;
  return posix_memalign(&p, alignment, bytes) == 0 ? p : nullptr;
}
void aligned_release(void* p) { std::free(p); }
#if defined(__GLIBC__)
void return_free_memory() { malloc_trim(0); }
#else
void return_free_memory() {}
#endif

size_t page_size() { return size_t(sysconf(_SC_PAGESIZE)); }

char* reserve_guarded_slots(size_t count, size_t slot) {
  void* p = mmap(nullptr, slot * count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* c = static_cast<char*>(p);
  size_t page = page_size();
  for (size_t i = 0; i < count; i++) mprotect(c + slot * i, page, PROT_NONE);  // overflow faults, never corrupts
  return c;
}

void release_slots(char* p, size_t count, size_t slot) { munmap(p, slot * count); }

#endif

}  // namespace pg25::platform
