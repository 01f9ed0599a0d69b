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
// Σ x[i] over a row (Deviations: Σ (x[i] − shift)²) in four accumulators (an add's latency is
// 3–4 cycles: two left Eigen's reductions ahead at width 512); the lanes past the row load
// `shift` (0 for the plain sum), which adds nothing to either sum.
template <bool Deviations>
LSATTN_AVX2_F32_TARGET inline __m256 add_term_avx2(__m256 sum, __m256 v, __m256 shift) {
  if constexpr (Deviations) {
    const __m256 d = _mm256_sub_ps(v, shift);
    return _mm256_fmadd_ps(d, d, sum);
  } else {
    return _mm256_add_ps(sum, v);
  }
}

template <bool Deviations>
LSATTN_AVX2_F32_TARGET inline float row_sum_avx2(const float* x, index_t width, float shift) {
  const __m256 shift_v = _mm256_set1_ps(shift);
  __m256 sum[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  index_t i = 0;
  for (; i + 32 <= width; i += 32)
    for (int j = 0; j < 4; ++j) sum[j] = add_term_avx2<Deviations>(sum[j], _mm256_loadu_ps(x + i + 8 * j), shift_v);
  for (int j = 0; i < width; i += 8, ++j)
    sum[j] = add_term_avx2<Deviations>(sum[j], load_tail_avx2(x + i, width - i, Deviations ? shift : 0.0f), shift_v);
  return lane_sum_avx2(_mm256_add_ps(_mm256_add_ps(sum[0], sum[1]), _mm256_add_ps(sum[2], sum[3])));
}

// One float row in AVX2 code (also on the avx512 path: LayerNorm is a small part of a layer),
// compiled for AVX2 even where the build's baseline is SSE2; the same two passes as below.
LSATTN_AVX2_F32_TARGET inline void layer_norm_row_avx2(const float* x, float* y, index_t width, const float* weight,
                                                       const float* bias, float eps) {
  const float mean = row_sum_avx2<false>(x, width, 0.0f) / static_cast<float>(width);
  const float variance = row_sum_avx2<true>(x, width, mean) / static_cast<float>(width);
  const __m256 mean_v = _mm256_set1_ps(mean);
  const __m256 inv_std = _mm256_set1_ps(1.0f / std::sqrt(variance + eps));
  index_t i = 0;
  for (; i + 8 <= width; i += 8) {
    const __m256 normalised = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), mean_v), inv_std);
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(normalised, _mm256_loadu_ps(weight + i), _mm256_loadu_ps(bias + i)));
  }
  if (i < width) {
    const index_t count = width - i;
    const __m256 normalised = _mm256_mul_ps(_mm256_sub_ps(load_tail_avx2(x + i, count, 0.0f), mean_v), inv_std);
    const __m256 out = _mm256_fmadd_ps(normalised, load_tail_avx2(weight + i, count, 0.0f),
                                       load_tail_avx2(bias + i, count, 0.0f));
    _mm256_maskstore_ps(y + i, lane_mask_avx2(count), out);
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
