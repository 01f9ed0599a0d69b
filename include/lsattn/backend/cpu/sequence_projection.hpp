#pragma once
// The dynamic projection over a whole sequence (spec §1.3 step 4, §3.3 step 4), shared by the
// bidirectional and the 2D executors: for head h and landmark j, P = softmax over the valid
// rows of logits[:, h·r + j]; K̄[j] = Pᵀ K_h, V̄[j] = Pᵀ V_h.
#include <algorithm>
#include <limits>
#include <vector>

#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/linear.hpp"
#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/backend/cpu/softmax.hpp"

namespace lsattn::cpu_detail {

// logits (length × nh·r); key, value (length × nh·dh) rows `width` apart; valid: one flag per
// row, or empty for all valid. Writes compressed_key/value (r × nh·dh), rows `width` apart.
// Row-oriented passes over fixed row blocks with partial results reduced in block order:
// vectorised, parallel, and independent of the thread count. 1/Σ is applied to K̄, V̄ rather
// than to every entry of P. With no valid row, K̄ = V̄ = 0 (the published code gives NaN).
template <class T>
void compress_sequence(const T* logits, const std::vector<char>& valid, index_t length, index_t heads, index_t rank,
                       index_t head_dim, const T* key, const T* value, T* compressed_key, T* compressed_value,
                       T* probability_scratch, int threads) {
  constexpr T minus_infinity = -std::numeric_limits<T>::infinity();
  const index_t columns = heads * rank, width = heads * head_dim;
  const index_t row_blocks = (length + linear_row_block - 1) / linear_row_block;
  auto is_valid = [&](index_t t) { return valid.empty() || valid[t]; };
  const auto scores = matrix(logits, length, columns, columns);
  auto probabilities = matrix(probability_scratch, length, columns, columns);  // length × nh·r
  RowMatrix<T> partial(row_blocks, columns);
  parallel_for(row_blocks, threads, [&](index_t block) {
    const index_t first = block * linear_row_block, rows = std::min(linear_row_block, length - first);
    auto block_max = partial.row(block);
    block_max.setConstant(minus_infinity);
    for (index_t t = first; t < first + rows; ++t)
      if (is_valid(t)) block_max = block_max.cwiseMax(scores.row(t));
  });
  const Eigen::Matrix<T, 1, Eigen::Dynamic> column_max = partial.colwise().maxCoeff();
  const Fp32Path kernels = softmax_path<T>();
  parallel_for(row_blocks, threads, [&](index_t block) {
    const index_t first = block * linear_row_block, rows = std::min(linear_row_block, length - first);
    auto block_sum = partial.row(block);
    block_sum.setZero();
    for (index_t t = first; t < first + rows; ++t) {
      auto p = probabilities.row(t);
      if (is_valid(t)) {
        exp_difference(scores.row(t).data(), column_max.data(), p.data(), columns, kernels);
        block_sum += p;
      } else {
        p.setZero();
      }
    }
  });
  Eigen::Matrix<T, 1, Eigen::Dynamic> column_sum = partial.row(0);
  for (index_t block = 1; block < row_blocks; ++block) column_sum += partial.row(block);
  parallel_for(2 * heads, threads, [&](index_t task) {
    const index_t h = task / 2;
    const T* source = task % 2 == 0 ? key : value;
    T* target = task % 2 == 0 ? compressed_key : compressed_value;
    auto compressed = matrix(target + h * head_dim, rank, head_dim, width);
    compressed.noalias() = probabilities.middleCols(h * rank, rank).transpose() *
                           matrix(source + h * head_dim, length, head_dim, width);
    for (index_t j = 0; j < rank; ++j)
      if (column_sum(h * rank + j) > T(0)) compressed.row(j) /= column_sum(h * rank + j);
  });
}

}  // namespace lsattn::cpu_detail
