#pragma once
// A deterministic parallel loop for the CPU backend.
#include <cstdint>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "lsattn/core/tensor.hpp"

namespace lsattn::cpu_detail {

// The processors this process may use: the most threads worth starting.
inline int available_threads() {
#if defined(_OPENMP)
  return omp_get_num_procs() > 0 ? omp_get_num_procs() : 1;
#else
  return 1;
#endif
}

// The team size for a request (0: OpenMP's default), never more than the processors: a
// request of 100000 threads would otherwise exhaust the process's stacks inside OpenMP.
inline int resolve_threads(int requested) {
#if defined(_OPENMP)
  const int wanted = requested > 0 ? requested : omp_get_max_threads();
  return wanted < available_threads() ? wanted : available_threads();
#else
  (void)requested;
  return 1;
#endif
}

// Runs body(i) for i in [0, count). Each task writes its own outputs, and the work split
// never depends on the thread count, so results are bitwise identical for any thread count.
template <class Body>
void parallel_for(index_t count, int threads, const Body& body) {
#if defined(_OPENMP)
  const int team = resolve_threads(threads);
  if (team > 1 && count > 1) {
#pragma omp parallel num_threads(team)
    {
      // Eigen would otherwise pick its GEMM blocking from the thread count (and may spawn
      // nested teams): keep every product single-threaded inside our tasks.
      omp_set_num_threads(1);
#pragma omp for schedule(dynamic, 1)
      for (index_t i = 0; i < count; ++i) body(i);
    }
    return;
  }
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  for (index_t i = 0; i < count; ++i) body(i);
  omp_set_num_threads(saved);
#else
  (void)threads;
  for (index_t i = 0; i < count; ++i) body(i);
#endif
}

}  // namespace lsattn::cpu_detail
