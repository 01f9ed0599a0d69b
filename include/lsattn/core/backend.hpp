#pragma once
// Where data lives (memory spaces) and where code runs (backends), as tag types.

namespace lsattn {

struct host_space {};
struct device_space {};

// Backends are chosen at compile time; each names the memory space its views must use.
struct cpu {
  using memory_space = host_space;
  static constexpr const char* name = "cpu";
};
struct cuda {
  using memory_space = device_space;
  static constexpr const char* name = "cuda";
};

#if defined(__CUDACC__)
#define LSATTN_HOST_DEVICE __host__ __device__
#else
#define LSATTN_HOST_DEVICE
#endif

}  // namespace lsattn
