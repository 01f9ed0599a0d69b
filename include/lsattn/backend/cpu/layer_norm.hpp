#pragma once
// Row-wise affine LayerNorm on the CPU (biased variance, as torch.nn.LayerNorm).
#include <algorithm>
#include <cmath>

#include <Eigen/Core>

#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/detail/executor.hpp"
#include "lsattn/policy/combiner.hpp"

namespace lsattn::cpu_detail {

// Normalises `rows` rows of `width` features, row i at in + i·width, into out (may alias in).
// Two passes (mean, then the mean squared deviation) in T, vectorised by Eigen's reductions,
// which sum in several partial accumulators: accurate for any width a model uses.
template <class T>
void layer_norm_rows(const T* in, T* out, index_t rows, index_t width, const LayerNormParams<T, host_space>& params) {
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
