#pragma once
// Plain multi-head softmax attention on the CPU, the comparison point for long-short attention.
// Exact (one softmax per query over all valid keys), processed in blocks of queries so that no
// L × L matrix exists: memory is O(block · L) per thread.
#include <algorithm>
#include <cmath>
#include <limits>

#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/core/checks.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn::baseline {

// query, key, value, context: (B, L, nh·dh); query unscaled; mask (B, L) optional.
template <class T>
void full_attention(index_t heads, HostView<const T, 3> query, HostView<const T, 3> key, HostView<const T, 3> value,
                    HostView<const T, 2> mask, HostView<T, 3> context, int threads = 0) {
  const index_t batch = query.extent(0), length = query.extent(1), width = query.extent(2);
  require(heads >= 1 && width % heads == 0, "heads (", heads, ") must divide the feature size ", width);
  detail::require_shape(key, "key", query.shape());
  detail::require_shape(value, "value", query.shape());
  detail::require_shape(context, "context", query.shape());
  if (!mask.empty()) detail::require_shape(mask, "mask", Shape<2>{batch, length});
  const index_t head_dim = width / heads;
  const T scale = T(1) / std::sqrt(static_cast<T>(head_dim));
  constexpr index_t query_block = 64;
  const index_t blocks = (length + query_block - 1) / query_block;

  cpu_detail::parallel_for(batch * heads * blocks, threads, [&](index_t task) {
    const index_t b = task / (heads * blocks), h = task / blocks % heads, block = task % blocks;
    const index_t first = block * query_block, count = std::min(query_block, length - first);
    const index_t offset = b * length * width + h * head_dim;
    const auto q = cpu_detail::matrix(query.data() + offset + first * width, count, head_dim, width);
    const auto k = cpu_detail::matrix(key.data() + offset, length, head_dim, width);
    const auto v = cpu_detail::matrix(value.data() + offset, length, head_dim, width);
    thread_local cpu_detail::RowMatrix<T> scores;
    scores.noalias() = (q * scale) * k.transpose();
    if (!mask.empty())
      for (index_t s = 0; s < length; ++s)
        if (mask(b, s) == T(0)) scores.col(s).setConstant(-std::numeric_limits<T>::infinity());
    for (index_t i = 0; i < count; ++i) {
      auto row = scores.row(i);
      const T top = row.maxCoeff();
      if (top == -std::numeric_limits<T>::infinity()) {
        row.setZero();  // no valid key: defined as a zero context
        continue;
      }
      row = (row.array() - top).exp();
      row /= row.sum();
    }
    cpu_detail::matrix(context.data() + offset + first * width, count, head_dim, width).noalias() = scores * v;
  });
}

}  // namespace lsattn::baseline
