// Aligned heap blocks and guarded stack reservations: aligned_alloc/posix_memalign and mmap on POSIX,
// _aligned_malloc and VirtualAlloc on Windows (whose C runtime has no aligned_alloc, and whose
// aligned blocks must go back through _aligned_free, never free).
#pragma once
#include <cstddef>

namespace pg25::platform {

// `bytes` aligned to `alignment` (a power of two); nullptr when out of memory.
void* aligned_allocate(size_t alignment, size_t bytes);
void aligned_release(void* p);

size_t page_size();
// Hands the allocator's free memory back to the system where it keeps it (glibc's heap keeps freed
// chunks below its top mapped): after a large release of small blocks, such as weights paged out.
void return_free_memory();
// `count` slots of `slot` bytes (a multiple of the page size), reserved lazily (pages are backed when
// touched); the first page of each slot faults on any access. nullptr when the reservation fails.
char* reserve_guarded_slots(size_t count, size_t slot);
void release_slots(char* p, size_t count, size_t slot);

}  // namespace pg25::platform
