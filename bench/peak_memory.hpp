#pragma once
// Heap accounting for the demo and the benchmarks: every malloc-family call of the process
// (operator new, Eigen, OpenMP) is counted, so "peak" is the true high-water mark of the heap.
#include <cstddef>

namespace lsattn_bench {

std::size_t current_heap_bytes();
std::size_t peak_heap_bytes();
// Starts a new measurement: the peak is reset to the current usage.
void reset_peak_heap();

}  // namespace lsattn_bench
