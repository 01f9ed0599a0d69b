#pragma once
// The dynamic projection over a whole sequence (spec §1.3 step 4, §3.3 step 4), shared by the
// bidirectional and the 2D executors: for head h and landmark j, P = softmax over the valid
// rows of logits[:, h·r + j]; K̄[j] = Pᵀ K_h, V̄[j] = Pᵀ V_h.
#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/linear.hpp"
#include "lsattn/backend/cpu/matmul_f32.hpp"
#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/backend/cpu/softmax.hpp"
#include "lsattn/backend/cpu/workspace.hpp"

namespace lsattn::cpu_detail {

// Rows of the fused exp-and-product pass per task: at most projection_blocks tasks (their
// partial K̄, V̄ of 2·nh·r·dh values each are summed at the end), at least linear_row_block rows.
// A function of the length only, so the sums' order never depends on the thread count.
inline constexpr index_t projection_blocks = 32;
inline index_t projection_block_rows(index_t length) {
  const index_t even_split = (length + projection_blocks - 1) / projection_blocks;
  return std::max(linear_row_block, (even_split + linear_row_block - 1) / linear_row_block * linear_row_block);
}

// Rows of P computed at a time (exp, then its products with K and V): P, K and V of a chunk
// stay in L2 (3 × 64 rows of 2 KiB at D = 512).
inline constexpr index_t projection_chunk_rows = 64;
static_assert(linear_row_block % projection_chunk_rows == 0, "blocks of whole chunks");

// Asks for the cache lines of `count` values from `row` on.
template <class T>
void prefetch_row(const T* row, index_t count) {
  constexpr index_t per_line = 64 / sizeof(T);
  for (index_t i = 0; i < count; i += per_line) __builtin_prefetch(row + i);
}

// Partial += P_chunkᵀ · source_chunk for every head: P (rows × nh·r), source rows `width` apart.
template <class T>
void accumulate_projection(const T* probability, index_t rows, index_t heads, index_t rank, index_t head_dim,
                           const T* source, T* partial, Fp32Path kernels, bool accumulate) {
  const index_t columns = heads * rank, width = heads * head_dim;
  for (index_t h = 0; h < heads; ++h) {
    T* target = partial + h * rank * head_dim;  // r × dh, dense
    if constexpr (std::is_same_v<T, float>) {
      transposed_matmul_f32(probability + h * rank, columns, rank, source + h * head_dim, width, head_dim, rows, target,
                            head_dim, kernels, accumulate);
    } else {
      multiply_into(matrix(target, rank, head_dim, head_dim),
                    matrix(probability, rows, columns, columns).middleCols(h * rank, rank).transpose(),
                    matrix(source + h * head_dim, rows, head_dim, width), accumulate);
    }
  }
}

// logits (length × nh·r); key, value (length × nh·dh) rows `width` apart; valid: one flag per
// row, or empty for all valid. Writes compressed_key/value (r × nh·dh), rows `width` apart.
// Two passes over fixed row blocks: the column maxima, then exp and the products Pᵀ K, Pᵀ V
// of each block while its P is in cache (P is never stored whole: O(nh·r·dh) scratch per task
// instead of O(L·nh·r)); partial results are summed in block order, so the result is
// independent of the thread count. 1/Σ is applied to K̄, V̄ rather than to every entry of P.
// With no valid row, K̄ = V̄ = 0 (the published code gives NaN).
template <class T>
void compress_sequence(const T* logits, const std::vector<char>& valid, index_t length, index_t heads, index_t rank,
                       index_t head_dim, const T* key, const T* value, T* compressed_key, T* compressed_value,
                       CpuWorkspace& scratch, int threads) {
  constexpr T minus_infinity = -std::numeric_limits<T>::infinity();
  const index_t columns = heads * rank, width = heads * head_dim, product_size = rank * head_dim * heads;
  auto is_valid = [&](index_t t) { return valid.empty() || valid[t]; };
  const auto scores = matrix(logits, length, columns, columns);

  const index_t max_blocks = (length + linear_row_block - 1) / linear_row_block;
  RowMatrix<T> block_max(max_blocks, columns);
  parallel_for(max_blocks, threads, [&](index_t block) {
    const index_t first = block * linear_row_block, rows = std::min(linear_row_block, length - first);
    auto maximum = block_max.row(block);
    maximum.setConstant(minus_infinity);
    for (index_t t = first; t < first + rows; ++t)
      if (is_valid(t)) maximum = maximum.cwiseMax(scores.row(t));
  });
  const Eigen::Matrix<T, 1, Eigen::Dynamic> column_max = block_max.colwise().maxCoeff();

  const Fp32Path kernels = softmax_path<T>();
  const index_t block_rows = projection_block_rows(length), blocks = (length + block_rows - 1) / block_rows;
  RowMatrix<T> block_sum(blocks, columns);
  // Per block: Σ_rows Pᵀ K for every head, then the same for V; given back on return.
  const CpuWorkspace::Frame frame(scratch);
  T* partial = scratch.take<T>(blocks * 2 * product_size);
  parallel_for(blocks, threads, [&](index_t block) {
    const index_t first = block * block_rows, last = std::min(length, first + block_rows);
    thread_local RowMatrix<T> probability;  // one chunk of P, kept in cache for its two products
    probability.resize(projection_chunk_rows, columns);
    auto sum = block_sum.row(block);
    sum.setZero();
    T* key_partial = partial + block * 2 * product_size;
    for (index_t chunk = first; chunk < last; chunk += projection_chunk_rows) {
      const index_t rows = std::min(projection_chunk_rows, last - chunk);
      for (index_t i = 0; i < rows; ++i) {
        // The chunk's K and V rows come from memory (the LN pass wrote all of them before):
        // fetched while the exp computes, so that the products find them in cache.
        prefetch_row(key + (chunk + i) * width, width);
        prefetch_row(value + (chunk + i) * width, width);
        auto p = probability.row(i);
        if (is_valid(chunk + i)) {
          exp_difference(scores.row(chunk + i).data(), column_max.data(), p.data(), columns, kernels);
          sum += p;
        } else {
          p.setZero();
        }
      }
      accumulate_projection(probability.data(), rows, heads, rank, head_dim, key + chunk * width, key_partial, kernels,
                            chunk > first);
      accumulate_projection(probability.data(), rows, heads, rank, head_dim, value + chunk * width,
                            key_partial + product_size, kernels, chunk > first);
    }
  });
  Eigen::Matrix<T, 1, Eigen::Dynamic> column_sum = block_sum.row(0);
  for (index_t block = 1; block < blocks; ++block) column_sum += block_sum.row(block);

  // Sum the blocks' partials in block order, per head and K/V, then divide by Σ.
  parallel_for(2 * heads, threads, [&](index_t task) {
    const index_t h = task / 2, which = task % 2;
    T* target = (which == 0 ? compressed_key : compressed_value) + h * head_dim;
    auto compressed = matrix(target, rank, head_dim, width);
    auto part = [&](index_t block) {
      return matrix(static_cast<const T*>(partial) + (block * 2 + which) * product_size + h * rank * head_dim, rank,
                    head_dim, head_dim);
    };
    compressed = part(0);
    for (index_t block = 1; block < blocks; ++block) compressed += part(block);
    for (index_t j = 0; j < rank; ++j)
      if (column_sum(h * rank + j) > T(0)) compressed.row(j) /= column_sum(h * rank + j);
  });
}

}  // namespace lsattn::cpu_detail
