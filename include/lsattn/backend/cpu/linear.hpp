#pragma once
// y = x Wᵀ + b on the CPU, W row-major [out, in] as in a PyTorch state_dict.
#include <algorithm>
#include <type_traits>

#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/block_matmul.hpp"
#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/core/config.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/detail/executor.hpp"

namespace lsattn::cpu_detail {

// Rows are split into fixed blocks, so the result is the same for any thread count.
inline constexpr index_t linear_row_block = 128;
// Up to this many rows the product runs as matrix-vector products over blocks of outputs.
inline constexpr index_t linear_vector_rows = 2;
inline constexpr index_t linear_output_block = 256;
inline constexpr index_t linear_parallel_work = index_t{1} << 20;

template <class T>
void linear(const T* x, index_t rows, index_t in_features, const T* weight, const T* bias, index_t out_features, T* y,
            int threads, Precision precision = Precision::fp32) {
  const index_t blocks = (rows + linear_row_block - 1) / linear_row_block;
  if (rows <= linear_vector_rows && precision == Precision::fp32) {
    // A few rows (a decoding step): packing W would cost as much as the product, which is a
    // matrix-vector product bound by reading W once. Split over blocks of outputs.
    const index_t output_blocks = (out_features + linear_output_block - 1) / linear_output_block;
    // Below about a million multiply-adds a second thread costs more to wake than it saves.
    const bool small = rows * out_features * in_features < linear_parallel_work;
    parallel_for(output_blocks, small ? 1 : threads, [&](index_t block) {
      const index_t first = block * linear_output_block, count = std::min(linear_output_block, out_features - first);
      const auto w = matrix(weight + first * in_features, count, in_features, in_features);
      for (index_t r = 0; r < rows; ++r) {
        Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>> out(y + r * out_features + first, count);
        out.noalias() = w * Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(x + r * in_features, in_features);
        if (bias != nullptr) out += Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(bias + first, count);
      }
    });
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    PackedOperand packed;  // W packed once per call, shared read-only by every row block
    packed.pack(weight, in_features, in_features, out_features, /*transposed=*/true, precision);
    parallel_for(blocks, threads, [&](index_t block) {
      const index_t first = block * linear_row_block;
      const index_t count = std::min(linear_row_block, rows - first);
      float* out = y + first * out_features;
      block_matmul(x + first * in_features, in_features, count, packed, out, out_features, false);
      if (bias != nullptr)
        matrix(out, count, out_features, out_features).rowwise() +=
            Eigen::Map<const Eigen::Matrix<float, 1, Eigen::Dynamic>>(bias, out_features);
    });
  } else {
    require(precision == Precision::fp32, "linear: precision bf16 needs float tensors");
    const auto w = matrix(weight, out_features, in_features, in_features);
    parallel_for(blocks, threads, [&](index_t block) {
      const index_t first = block * linear_row_block;
      const index_t count = std::min(linear_row_block, rows - first);
      auto out = matrix(y + first * out_features, count, out_features, out_features);
      out.noalias() = matrix(x + first * in_features, count, in_features, in_features) * w.transpose();
      if (bias != nullptr) out.rowwise() += Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(bias, out_features);
    });
  }
}

}  // namespace lsattn::cpu_detail

namespace lsattn::detail {

template <>
struct LinearOp<cpu> {
  template <class T>
  static void run(const T* x, index_t rows, index_t in_features, const T* weight, const T* bias, index_t out_features,
                  T* y, int threads, Precision precision = Precision::fp32) {
    cpu_detail::linear(x, rows, in_features, weight, bias, out_features, y, threads, precision);
  }
};

}  // namespace lsattn::detail
