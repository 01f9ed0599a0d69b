#pragma once
// Row-wise affine LayerNorm on the CPU (biased variance, as torch.nn.LayerNorm).
#include <algorithm>
#include <cmath>
#include <type_traits>

#include <Eigen/Core>

#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/backend/cpu/softmax.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/detail/executor.hpp"
#include "lsattn/policy/combiner.hpp"

namespace lsattn::cpu_detail {

#if LSATTN_HAS_PANEL_F32_KERNELS
// One float row in AVX2 code (also on the avx512 path: LayerNorm is a small part of a layer),
// compiled so even where the build's baseline is SSE2, the same two passes as below; the
// lanes past the row load the value that adds nothing (0 for the sum, the mean for the
// deviations).
LSATTN_AVX2_F32_TARGET inline void layer_norm_row_avx2(const float* x, float* y, index_t width, const float* weight,
                                                       const float* bias, float eps) {
  __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
  index_t i = 0;
  for (; i + 16 <= width; i += 16) {
    sum0 = _mm256_add_ps(sum0, _mm256_loadu_ps(x + i));
    sum1 = _mm256_add_ps(sum1, _mm256_loadu_ps(x + i + 8));
  }
  for (; i < width; i += 8) sum0 = _mm256_add_ps(sum0, load_tail_avx2(x + i, width - i, 0.0f));
  const float mean = lane_sum_avx2(_mm256_add_ps(sum0, sum1)) / static_cast<float>(width);
  const __m256 mean_v = _mm256_set1_ps(mean);
  sum0 = sum1 = _mm256_setzero_ps();
  for (i = 0; i + 16 <= width; i += 16) {
    const __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(x + i), mean_v);
    const __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(x + i + 8), mean_v);
    sum0 = _mm256_fmadd_ps(d0, d0, sum0);
    sum1 = _mm256_fmadd_ps(d1, d1, sum1);
  }
  for (; i < width; i += 8) {
    const __m256 d = _mm256_sub_ps(load_tail_avx2(x + i, width - i, mean), mean_v);
    sum0 = _mm256_fmadd_ps(d, d, sum0);
  }
  const float variance = lane_sum_avx2(_mm256_add_ps(sum0, sum1)) / static_cast<float>(width);
  const __m256 inv_std = _mm256_set1_ps(1.0f / std::sqrt(variance + eps));
  for (i = 0; i < width; i += 8) {
    const index_t count = std::min<index_t>(8, width - i);
    const __m256 normalised = _mm256_mul_ps(_mm256_sub_ps(load_tail_avx2(x + i, count, 0.0f), mean_v), inv_std);
    const __m256 out = _mm256_fmadd_ps(normalised, load_tail_avx2(weight + i, count, 0.0f),
                                       load_tail_avx2(bias + i, count, 0.0f));
    if (count == 8) _mm256_storeu_ps(y + i, out);
    else _mm256_maskstore_ps(y + i, lane_mask_avx2(count), out);
  }
}
#endif

// Normalises `rows` rows of `width` features, row i at in + i·width, into out (may alias in).
// Two passes (mean, then the mean squared deviation) in T, in several partial accumulators
// (AVX2 lanes for float on a vector path, Eigen's reductions otherwise): accurate for any width
// a model uses.
template <class T>
void layer_norm_rows(const T* in, T* out, index_t rows, index_t width, const LayerNormParams<T, host_space>& params) {
#if LSATTN_HAS_PANEL_F32_KERNELS
  if constexpr (std::is_same_v<T, float>) {
    if (softmax_path<T>() != Fp32Path::eigen) {
      for (index_t i = 0; i < rows; ++i)
        layer_norm_row_avx2(in + i * width, out + i * width, width, params.weight.data(), params.bias.data(),
                            static_cast<float>(params.eps));
      return;
    }
  }
#endif
  using Row = Eigen::Array<T, 1, Eigen::Dynamic>;
  const Eigen::Map<const Row> weight(params.weight.data(), width), bias(params.bias.data(), width);
  for (index_t i = 0; i < rows; ++i) {
    const Eigen::Map<const Row> x(in + i * width, width);
    Eigen::Map<Row> y(out + i * width, width);
    const T mean = x.sum() / static_cast<T>(width);
    const T variance = (x - mean).square().sum() / static_cast<T>(width);
    const T inv_std = T(1) / std::sqrt(variance + static_cast<T>(params.eps));
    y = (x - mean) * inv_std * weight + bias;
  }
}

}  // namespace lsattn::cpu_detail

namespace lsattn::detail {

template <>
struct LayerNormOp<cpu> {
  // Fixed row blocks, so the result is the same for any thread count.
  template <class T>
  static void run(const T* in, T* out, index_t rows, index_t width, const LayerNormParams<T, host_space>& params,
                  int threads = 0) {
    constexpr index_t block = 256;
    cpu_detail::parallel_for((rows + block - 1) / block, threads, [&](index_t i) {
      const index_t first = i * block;
      cpu_detail::layer_norm_rows(in + first * width, out + first * width, std::min(block, rows - first), width, params);
    });
  }
};

}  // namespace lsattn::detail
