#pragma once
// Row-wise affine LayerNorm on the CPU (biased variance, as torch.nn.LayerNorm).
#include <algorithm>
#include <cmath>

#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/detail/executor.hpp"
#include "lsattn/policy/combiner.hpp"

namespace lsattn::cpu_detail {

// Normalises `rows` rows of `width` features, row i at in + i·width, into out (may alias in).
// Moments are accumulated in double so the result does not depend on the width's rounding.
template <class T>
void layer_norm_rows(const T* in, T* out, index_t rows, index_t width, const LayerNormParams<T, host_space>& params) {
  const T* weight = params.weight.data();
  const T* bias = params.bias.data();
  for (index_t i = 0; i < rows; ++i) {
    const T* x = in + i * width;
    T* y = out + i * width;
    double mean = 0;
    for (index_t f = 0; f < width; ++f) mean += x[f];
    mean /= static_cast<double>(width);
    double variance = 0;
    for (index_t f = 0; f < width; ++f) variance += (x[f] - mean) * (x[f] - mean);
    variance /= static_cast<double>(width);
    const double inv_std = 1.0 / std::sqrt(variance + params.eps);
    for (index_t f = 0; f < width; ++f) y[f] = static_cast<T>((x[f] - mean) * inv_std) * weight[f] + bias[f];
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
