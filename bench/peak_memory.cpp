// Interposes glibc's allocator entry points to track heap usage (see peak_memory.hpp).
#include "peak_memory.hpp"

#include <malloc.h>

#include <atomic>
#include <cerrno>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {

std::atomic<std::size_t> current_bytes{0};
std::atomic<std::size_t> peak_bytes{0};

void* note_allocation(void* pointer) {
  if (pointer != nullptr) {
    const std::size_t now = current_bytes.fetch_add(malloc_usable_size(pointer)) + malloc_usable_size(pointer);
    std::size_t peak = peak_bytes.load();
    while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {
    }
  }
  return pointer;
}

void note_release(void* pointer) {
  if (pointer != nullptr) current_bytes.fetch_sub(malloc_usable_size(pointer));
}

}  // namespace

extern "C" {
void* malloc(std::size_t size) { return note_allocation(__libc_malloc(size)); }
void* calloc(std::size_t count, std::size_t size) { return note_allocation(__libc_calloc(count, size)); }
void free(void* pointer) {
  note_release(pointer);
  __libc_free(pointer);
}
void* realloc(void* pointer, std::size_t size) {
  note_release(pointer);
  void* moved = __libc_realloc(pointer, size);
  if (moved == nullptr && size != 0 && pointer != nullptr) {
    note_allocation(pointer);  // the old block is still alive
    return nullptr;
  }
  return note_allocation(moved);
}
void* memalign(std::size_t alignment, std::size_t size) { return note_allocation(__libc_memalign(alignment, size)); }
void* aligned_alloc(std::size_t alignment, std::size_t size) { return memalign(alignment, size); }
int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  void* pointer = memalign(alignment, size);
  if (pointer == nullptr) return ENOMEM;
  *out = pointer;
  return 0;
}
}

namespace lsattn_bench {

std::size_t current_heap_bytes() { return current_bytes.load(); }
std::size_t peak_heap_bytes() { return peak_bytes.load(); }
void reset_peak_heap() { peak_bytes.store(current_bytes.load()); }

}  // namespace lsattn_bench
