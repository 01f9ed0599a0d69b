#pragma once
// Exact softmax attention with an online (flash-style) softmax on the CPU: queries in blocks of
// 64, keys in blocks of 256, a running max and sum per query, so no score matrix larger than
// 64 × 256 exists. Which keys a query sees comes from a visibility policy (full, causal, or a
// sliding window), which also bounds the key blocks a query block needs to visit.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/block_matmul.hpp"
#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/backend/cpu/softmax.hpp"
#include "lsattn/core/config.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"
#include "lsattn/policy/window.hpp"

namespace lsattn::cpu_detail {

inline constexpr index_t flash_query_block = 64;
inline constexpr index_t flash_key_block = 256;
// Packed kernels compute scores, exponentials and P·V per slice of 16 queries over the slice's
// own key columns (panel-aligned), not over the whole block's: a sliding window of 100 keys is
// 163 columns for 64 queries but at most 115 (+ panel alignment) for 16, and the slices of a
// causal block's diagonal skip the keys after their last query. Exact: the columns left out
// are invisible to every query of the slice (their probabilities are zero).
inline constexpr index_t flash_slice_rows = 16;

// The key columns [begin, end) of a key block (key_first … key_first + key_count − 1) that
// queries t0 … t1 − 1 may see, begin rounded down to a panel boundary (key_first is on one).
template <class Visibility>
IndexRange flash_slice_columns(const Visibility& visibility, index_t t0, index_t t1, index_t length, index_t key_first,
                               index_t key_count, index_t panel) {
  const IndexRange keys = visibility.keys(t0, t1, length);
  const index_t begin = std::clamp(keys.begin - key_first, index_t{0}, key_count) / panel * panel;
  return {begin, std::clamp(keys.end - key_first, begin, key_count)};
}

// q, k, v, context: (L × nh·dh) rows `width` apart for one batch item; valid: key flags or
// empty (the same flags say which queries count for max_logit). `visibility_of(head)` returns
// the head's policy: keys(t0, t1, L), the key range a block of queries needs, and
// row_keys(t, L), the contiguous range query t sees. Writes the heads' contexts; a query with
// no visible key gets zeros. max_logit[h] (optional) receives the largest scaled score of head h.
template <class T, class VisibilityOf>
void flash_attention(const T* q, const T* k, const T* v, const std::vector<char>& valid, index_t length, index_t heads,
                     index_t head_dim, const VisibilityOf& visibility_of, T* context, T* max_logit, int threads,
                     Precision precision = Precision::fp32) {
  using Matrix = RowMatrix<T>;
  constexpr T minus_infinity = -std::numeric_limits<T>::infinity();
  const index_t width = heads * head_dim, blocks = (length + flash_query_block - 1) / flash_query_block;
  const T scale = T(1) / std::sqrt(static_cast<T>(head_dim));
  std::vector<T> block_max(static_cast<std::size_t>(blocks * heads), minus_infinity);
  // Scores from finite q and k overflow float when a row's largest visible score is +inf, or
  // when every visible key scores -inf (which would pass for "no visible key" and give a
  // silently wrong zero context); -inf beside a finite maximum is exact (probability 0). Both
  // are seen from the row maximum, computed anyway. Flagged, thrown after the parallel loop
  // (an exception must not leave an OpenMP region).
  std::atomic<bool> overflowed{false};
  // Float tensors: each head's keys and values are packed once for the packed kernels (fp32 or
  // bf16), and key blocks start on a panel boundary (the extra leading keys are masked like
  // any invisible key). Double tensors: Eigen products.
  constexpr bool packed = uses_packed_kernels<T>;
  require_precision<T>(precision);
  const Fp32Path kernels = softmax_path<T>();
  std::vector<PackedOperand> packed_key(packed ? heads : 0), packed_value(packed ? heads : 0);
  if constexpr (packed) {
    parallel_for(2 * heads, threads, [&](index_t task) {
      const index_t h = task / 2;
      if (task % 2 == 0) packed_key[h].pack(k + h * head_dim, width, head_dim, length, /*transposed=*/true, precision);
      else packed_value[h].pack(v + h * head_dim, width, length, head_dim, /*transposed=*/false, precision);
    });
  }
  parallel_for(blocks * heads, threads, [&](index_t task) {
    const index_t h = task / blocks, block = task % blocks, column = h * head_dim;
    const auto visibility = visibility_of(h);
    const index_t first = block * flash_query_block, count = std::min(flash_query_block, length - first);
    const IndexRange keys = visibility.keys(first, first + count, length);
    thread_local Matrix queries, scores, accumulator;
    thread_local Eigen::Matrix<T, Eigen::Dynamic, 1> running_max, running_sum;
    queries = matrix(q + first * width + column, count, head_dim, width) * scale;
    accumulator.setZero(count, head_dim);
    running_max.setConstant(count, minus_infinity);
    running_sum.setZero(count);
    T largest = minus_infinity;
    const index_t keys_begin = packed ? keys.begin / packed_panel * packed_panel : keys.begin;
    for (index_t key_first = keys_begin; key_first < keys.end; key_first += flash_key_block) {
      const index_t key_count = std::min(flash_key_block, keys.end - key_first);
      // Each slice's key columns: all of them for the Eigen path.
      auto slice_columns = [&](index_t s0) {
        if constexpr (packed) {
          return flash_slice_columns(visibility, first + s0, first + std::min(count, s0 + flash_slice_rows), length,
                                     key_first, key_count, packed_panel);
        } else {
          return IndexRange{0, key_count};
        }
      };
      scores.resize(count, key_count);
      if constexpr (packed) {
        for (index_t s0 = 0; s0 < count; s0 += flash_slice_rows) {
          const IndexRange columns = slice_columns(s0);
          if (columns.size() == 0) continue;
          block_matmul(queries.data() + s0 * head_dim, head_dim, std::min(flash_slice_rows, count - s0),
                       slice(packed_key[h], 0, head_dim, key_first + columns.begin, columns.size()),
                       scores.data() + s0 * key_count + columns.begin, key_count, false);
        }
      } else {
        scores.noalias() = queries * matrix(k + key_first * width + column, key_count, head_dim, width).transpose();
      }
      for (index_t i = 0; i < count; ++i) {
        auto row = scores.row(i);
        const IndexRange columns = slice_columns(i / flash_slice_rows * flash_slice_rows);
        // The visible keys of a query are one contiguous range inside its slice's columns: only
        // those are read; the rest of the slice's columns become zero probabilities.
        const IndexRange seen = visibility.row_keys(first + i, length);
        const index_t begin = std::clamp(seen.begin - key_first, columns.begin, columns.end);
        const index_t end = std::clamp(seen.end - key_first, begin, columns.end);
        auto visible = row.segment(begin, end - begin);
        bool any_visible = end > begin;
        if (!valid.empty()) {
          any_visible = false;
          for (index_t j = begin; j < end; ++j) {
            if (valid[key_first + j]) any_visible = true;
            else row(j) = minus_infinity;
          }
        }
        const T largest_visible = row_max(visible.data(), end - begin, kernels);
        if (largest_visible == std::numeric_limits<T>::infinity() || (any_visible && largest_visible == minus_infinity)) {
          overflowed = true;
          return;
        }
        if (valid.empty() || valid[first + i]) largest = std::max(largest, largest_visible);  // padded queries do not count
        row.segment(columns.begin, begin - columns.begin).setZero();
        row.segment(end, columns.end - end).setZero();
        const T new_max = std::max(running_max(i), largest_visible);
        if (new_max == minus_infinity) {  // nothing visible yet
          visible.setZero();
          continue;
        }
        const T correction = std::exp(running_max(i) - new_max);
        running_sum(i) = running_sum(i) * correction + exp_shifted(visible.data(), end - begin, new_max, kernels);
        accumulator.row(i) *= correction;
        running_max(i) = new_max;
      }
      if constexpr (packed) {
        for (index_t s0 = 0; s0 < count; s0 += flash_slice_rows) {
          const IndexRange columns = slice_columns(s0);
          if (columns.size() == 0) continue;
          block_matmul(scores.data() + s0 * key_count + columns.begin, key_count, std::min(flash_slice_rows, count - s0),
                       slice(packed_value[h], key_first + columns.begin, columns.size(), 0, head_dim),
                       accumulator.data() + s0 * head_dim, head_dim, true);
        }
      } else {
        accumulator.noalias() += scores * matrix(v + key_first * width + column, key_count, head_dim, width);
      }
    }
    for (index_t i = 0; i < count; ++i)
      if (running_sum(i) > 0) accumulator.row(i) /= running_sum(i);
    matrix(context + first * width + column, count, head_dim, width) = accumulator;
    block_max[static_cast<std::size_t>(block * heads + h)] = largest;
  });
  if (overflowed) {
    throw non_finite("lsattn: attention scores q·k/√dh: non-finite values from finite queries and keys (float overflow)");
  }
  if (max_logit != nullptr) {
    for (index_t h = 0; h < heads; ++h) {
      T largest = minus_infinity;
      for (index_t block = 0; block < blocks; ++block) largest = std::max(largest, block_max[block * heads + h]);
      max_logit[h] = largest;
    }
  }
}

}  // namespace lsattn::cpu_detail
