#pragma once
// Run-time choice among the implementations ("paths") of one CPU kernel: the fastest path this
// CPU runs, unless an environment variable or a call forces one. A forced path the CPU cannot
// run, or an unknown name, is an error, never a silent fallback.
#include <array>
#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>

#include "lsattn/core/error.hpp"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#include <immintrin.h>
// The x86-64 micro-kernels (AVX2, AVX-512, AMX) are compiled with target attributes and chosen
// at run time from CPUID, so one binary runs on any x86-64 whatever its -march.
#define LSATTN_HAS_X86_KERNELS 1
// Unrolls a loop of a compile-time trip count whatever the caller's optimisation level: the
// micro-kernels' accumulators must live in registers, which GCC 12 at -O2 (CMake's
// RelWithDebInfo, many projects' default) does not arrange without it; they kept them in memory
// and ran at a third of their -O3 speed (fp32 90 against 244 GFLOP/s, bf16 165 against 468).
#define LSATTN_UNROLL _Pragma("GCC unroll 16")
#else
#define LSATTN_HAS_X86_KERNELS 0
#endif

namespace lsattn::cpu_detail {

// Specialised per path enum (values 0 … N−1, slowest first): `names` in enum order, `variable`
// (the environment variable), `setter` (the public function that forces a path),
// `available(path)` and optionally `automatic(path)` (false: never the default choice).
template <class Path>
struct PathTraits;

template <class Path>
const char* path_name(Path path) {
  const auto& names = PathTraits<Path>::names;
  const auto index = static_cast<std::size_t>(path);
  return index < names.size() ? names[index] : "(unknown)";
}

template <class Path>
std::atomic<int>& forced_path() {  // -1: not forced
  static std::atomic<int> forced{-1};
  return forced;
}

// The path the environment variable (or, unset, the default choice) names, resolved once: the
// products ask for their path per block, and getenv's scan of the environment had grown to 1.4%
// of a small layer's time (LRA text, bf16). `unresolved` until the first product, and again
// after reset_path_choice().
inline constexpr int unresolved_path = -1;

template <class Path>
std::atomic<int>& environment_path() {
  static std::atomic<int> resolved{unresolved_path};
  return resolved;
}

template <class Path>
void force_path(Path path) {
  using Traits = PathTraits<Path>;
  const auto index = static_cast<std::size_t>(path);
  require(index < Traits::names.size(), Traits::setter, ": unknown path value ", static_cast<int>(path));
  require(Traits::available(path), Traits::setter, ": path ", path_name(path), " is not available on this CPU");
  forced_path<Path>() = static_cast<int>(path);
}

// Drops a forced path and the resolved environment choice: the next product reads the
// environment variable again.
template <class Path>
void reset_path_choice() {
  forced_path<Path>() = -1;
  environment_path<Path>() = unresolved_path;
}

// Whether the default choice may take `path` (Traits::automatic, where given; a path not yet
// verified on real hardware runs only when asked for).
template <class Path>
bool automatic(Path path) {
  if constexpr (requires { PathTraits<Path>::automatic(path); }) return PathTraits<Path>::automatic(path);
  else return true;
}

// The environment variable's path, else the fastest available one the default may take. Throws
// for an unknown name or a path this CPU cannot run (nothing is cached then).
template <class Path>
Path path_from_environment() {
  using Traits = PathTraits<Path>;
  const char* requested = std::getenv(Traits::variable);
  if (requested == nullptr || *requested == '\0') {
    for (std::size_t i = Traits::names.size(); i-- > 1;)
      if (Traits::available(static_cast<Path>(i)) && automatic(static_cast<Path>(i))) return static_cast<Path>(i);
    return static_cast<Path>(0);
  }
  std::string expected;
  for (std::size_t i = 0; i < Traits::names.size(); ++i) {
    if (std::string_view(requested) == Traits::names[i]) {
      require(Traits::available(static_cast<Path>(i)), Traits::variable, ": path ", requested,
              " is not available on this CPU");
      return static_cast<Path>(i);
    }
    expected += (i == 0 ? "" : " or ") + std::string(Traits::names[i]);
  }
  throw error(std::string("lsattn: ") + Traits::variable + ": unknown path '" + requested + "' (expected " + expected +
              ")");
}

template <class Path>
Path active_path() {
  const int forced = forced_path<Path>().load(std::memory_order_relaxed);
  if (forced >= 0) return static_cast<Path>(forced);
  int resolved = environment_path<Path>().load(std::memory_order_relaxed);
  if (resolved == unresolved_path) {
    // Two threads may both resolve here; they find the same answer.
    resolved = static_cast<int>(path_from_environment<Path>());
    environment_path<Path>().store(resolved, std::memory_order_relaxed);
  }
  return static_cast<Path>(resolved);
}

// AVX2 with FMA3 (Haswell, Zen and later; also the client CPUs without AVX-512), in a process
// whose OS saves the YMM state (libgcc's check).
inline bool cpu_supports_avx2_fma() {
#if LSATTN_HAS_X86_KERNELS
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return avx2;
#else
  return false;
#endif
}

inline bool cpu_supports_avx512(bool with_bf16) {
#if LSATTN_HAS_X86_KERNELS
  static const bool avx512 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  }();
  static const bool bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
  return with_bf16 ? bf16 : avx512;
#else
  (void)with_bf16;
  return false;
#endif
}

#if LSATTN_HAS_X86_KERNELS
// The epilogue of both 8 × 32 micro-kernels: C[Rows × cols] (+)= sum, cols ≤ 32, masked stores
// so that nothing past the last column is touched.
// Lanes [0, count) of a 16-lane mask (all for count ≥ 16, none for count ≤ 0).
inline __mmask16 lane_mask16(std::ptrdiff_t count) {
  if (count >= 16) return static_cast<__mmask16>(0xffff);
  return count > 0 ? static_cast<__mmask16>((1u << count) - 1u) : static_cast<__mmask16>(0);
}

template <int Rows>
__attribute__((target("avx512f"))) inline void store_tile(__m512 (&sum)[Rows][2], float* c, std::ptrdiff_t ldc,
                                                          std::ptrdiff_t cols, bool accumulate) {
  const __mmask16 mask0 = lane_mask16(cols), mask1 = lane_mask16(cols - 16);
  LSATTN_UNROLL
  for (int i = 0; i < Rows; ++i) {
    float* row = c + i * ldc;
    if (accumulate) {
      sum[i][0] = _mm512_add_ps(sum[i][0], _mm512_maskz_loadu_ps(mask0, row));
      sum[i][1] = _mm512_add_ps(sum[i][1], _mm512_maskz_loadu_ps(mask1, row + 16));
    }
    _mm512_mask_storeu_ps(row, mask0, sum[i][0]);
    _mm512_mask_storeu_ps(row + 16, mask1, sum[i][1]);
  }
}
#endif

}  // namespace lsattn::cpu_detail
