#pragma once
// Chunk compression of the causal variant (spec §2.4 steps 2 and 4): for chunk c, head h and
// landmark j, out[c·r + j][h-slice] = Σ_i softmax_i(logits[c·l + i][h·r + j]) · source[c·l + i][h-slice].
// The cache passes its raw hidden rows as `source`, the segment its projected keys/values.
#include <algorithm>

#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/detail/executor.hpp"

namespace lsattn::cpu_detail {

// logits: (chunks·l, nh·r); source: (chunks·l, nh·dh) with rows `source_stride` apart;
// out: (chunks·r, nh·dh).
template <class T>
void compress_chunks(const T* logits, const T* source, index_t source_stride, index_t chunks, index_t chunk,
                     index_t heads, index_t head_dim, index_t rank, T* out, int threads) {
  const index_t columns = heads * rank, width = heads * head_dim;
  parallel_for(chunks, threads, [&](index_t c) {
    RowMatrix<T> probabilities = matrix(logits + c * chunk * columns, chunk, columns, columns);
    const Eigen::Matrix<T, 1, Eigen::Dynamic> column_max = probabilities.colwise().maxCoeff();
    probabilities = (probabilities.rowwise() - column_max).array().exp();
    const Eigen::Matrix<T, 1, Eigen::Dynamic> column_sum = probabilities.colwise().sum();
    probabilities.array().rowwise() /= column_sum.array();
    const auto rows = matrix(source + c * chunk * source_stride, chunk, width, source_stride);
    for (index_t h = 0; h < heads; ++h) {
      matrix(out + c * rank * width + h * head_dim, rank, head_dim, width).noalias() =
          probabilities.middleCols(h * rank, rank).transpose() * rows.middleCols(h * head_dim, head_dim);
    }
  });
}

}  // namespace lsattn::cpu_detail

namespace lsattn::detail {

template <>
struct CompressChunksOp<cpu> {
  template <class T>
  static void run(const T* logits, const T* source, index_t source_stride, index_t chunks, index_t chunk,
                  index_t heads, index_t head_dim, index_t rank, T* out, int threads) {
    cpu_detail::compress_chunks(logits, source, source_stride, chunks, chunk, heads, head_dim, rank, out, threads);
  }
};

}  // namespace lsattn::detail
