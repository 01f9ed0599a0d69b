#pragma once
// Helpers shared by the CUDA test translation units: random inputs, the values as a dtype
// stores them, uploads, and the comparison with the CPU reference.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <random>
#include <type_traits>

#include <catch2/catch.hpp>

#include "lsattn/cuda.cuh"

namespace lsattn_test {

template <class T>
lsattn::Tensor<T, 3> random_tensor(const lsattn::Shape<3>& shape, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  lsattn::Tensor<T, 3> t(shape);
  for (auto& v : t.values()) v = static_cast<T>(normal(rng));
  return t;
}

// The values as T stores them, back in float (the CPU reference sees the same inputs).
template <class T, std::size_t Rank>
lsattn::Tensor<float, Rank> rounded_as(lsattn::Tensor<float, Rank> t) {
  for (auto& x : t.values()) x = static_cast<float>(static_cast<T>(x));
  return t;
}

// max |got − want| / max |want| on the host (infinite when any output is NaN or infinite).
inline double host_relative_error(const lsattn::Tensor<float, 3>& got, const lsattn::Tensor<float, 3>& want) {
  REQUIRE(got.shape() == want.shape());
  double worst = 0, scale = 1e-3;
  for (float x : want.values()) scale = std::max(scale, static_cast<double>(std::abs(x)));
  for (lsattn::index_t i = 0; i < got.size(); ++i) {
    const double difference = std::abs(static_cast<double>(got.values()[i]) - want.values()[i]);
    if (!std::isfinite(difference)) return HUGE_VAL;  // std::max would drop a NaN
    worst = std::max(worst, difference);
  }
  return worst / scale;
}

// The same for a device result: waits for the device and reads `got` back first.
template <class T>
double relative_error(const lsattn::DeviceTensor<T, 3>& got, const lsattn::Tensor<float, 3>& want) {
  return host_relative_error(lsattn::to_host<float>(got), want);
}

template <class T>
constexpr double tolerance_for(double half_tolerance, double bfloat_tolerance) {
  return std::is_same_v<T, float> ? 2e-4 : std::is_same_v<T, __half> ? half_tolerance : bfloat_tolerance;
}

// Whether GPU work can run here. Without a device the case is skipped with a warning, unless
// LSATTN_REQUIRE_GPU=1 (the GPU bundle), where a skip is a failure.
inline bool gpu_present() {
  if (lsattn::cuda_detail::device_available()) return true;
  if (lsattn::cuda_detail::gpu_required()) FAIL("LSATTN_REQUIRE_GPU=1 but no CUDA device is visible");
  WARN("no CUDA device: GPU comparison skipped (host-side CUDA tests still ran)");
  return false;
}

// Whether the tiled tensor-core kernels can run on this device and build; the same rule.
inline bool tiled_kernels_present() {
  if (lsattn::cuda_detail::TiledSupport::current().capable) return true;
  if (lsattn::cuda_detail::gpu_required())
    FAIL("LSATTN_REQUIRE_GPU=1 but this device (or build) cannot run the tiled kernels (needs sm_80 code and device)");
  WARN("this device (or build) cannot run the tiled kernels: only the per-query kernels were tested");
  return false;
}

// Sets a test hook (tiled_kernel_enabled(), mma_kernel_enabled(), max_gemm_rows()) for one
// scope; restored even when the run throws.
template <class V>
class ScopedValue {
 public:
  ScopedValue(V& variable, V value) : variable_(variable), saved_(variable) { variable_ = value; }
  ScopedValue(const ScopedValue&) = delete;
  ScopedValue& operator=(const ScopedValue&) = delete;
  ~ScopedValue() { variable_ = saved_; }

 private:
  V& variable_;
  V saved_;
};

// A tensor-core kernel's result `got` against the one-block-per-query kernel's on the same
// inputs (`run` again with the mma kernels switched off): close, and not bitwise equal (so two
// different kernels did run).
template <class Run>
void check_against_per_query_kernel(const lsattn::Tensor<float, 3>& got, Run&& run, double tolerance) {
  const lsattn::Tensor<float, 3> per_query = [&] {
    const ScopedValue scope(lsattn::cuda_detail::mma_kernel_enabled(), false);
    return run();
  }();
  INFO("the tensor-core kernel against the one-block-per-query kernel, same dtype and inputs");
  CHECK(host_relative_error(got, per_query) < tolerance);
  CHECK(host_relative_error(got, per_query) > 0.0);
}

inline lsattn::DeviceWorkspace workspace_of(lsattn::DeviceTensor<unsigned char, 1>& memory) {
  return {memory.view().data(), static_cast<std::size_t>(memory.size())};
}

}  // namespace lsattn_test
