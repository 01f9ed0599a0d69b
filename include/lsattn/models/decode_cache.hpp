#pragma once
// What one causal attention layer with local and global heads keeps for decoding one token at a
// time: for the local heads a ring of the last `window` keys and values (token t in slot
// t % window), for the global heads every earlier key and value. A step appends the token's
// keys and values and attends each head to what it may see, so a local head's cost and memory
// per step do not depend on how many tokens came before.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include <Eigen/Core>

#include "lsattn/backend/cpu/eigen.hpp"
#include "lsattn/backend/cpu/parallel.hpp"
#include "lsattn/core/error.hpp"
#include "lsattn/core/tensor.hpp"

namespace lsattn::models {

template <class T = float>
struct HeadCache {
  std::vector<T> local_keys, local_values;    // min(tokens, window) × (local heads · head_dim)
  std::vector<T> global_keys, global_values;  // tokens × (global heads · head_dim), one row per token

  std::size_t bytes() const {
    return (local_keys.size() + local_values.size() + global_keys.size() + global_values.size()) * sizeof(T);
  }
};

}  // namespace lsattn::models

namespace lsattn::detail {

// The decoding step of one layer for the token at `position`. q, k, v: the token's rows over
// all heads (heads · head_dim); is_local(h) tells the head's kind; local heads take the columns
// of the local ring in head order, global heads those of the global rows. Writes the heads'
// contexts side by side into `context`.
template <class T, class IsLocal>
void decode_attention(const T* q, const T* k, const T* v, index_t heads, index_t head_dim, const IsLocal& is_local,
                      index_t window, index_t position, models::HeadCache<T>& cache, T* context, int threads) {
  // Each head's column in its group's rows.
  std::vector<index_t> column(static_cast<std::size_t>(heads));
  index_t local = 0, global = 0;
  for (index_t h = 0; h < heads; ++h) column[h] = (is_local(h) ? local++ : global++) * head_dim;
  local *= head_dim;
  global *= head_dim;
  // The ring grows to `window` slots as tokens come (a huge window costs nothing until used).
  const index_t filled = std::min(position, window);
  require(cache.local_keys.size() == static_cast<std::size_t>(filled * local) &&
              cache.global_keys.size() == static_cast<std::size_t>(position * global),
          "state: does not match this layer at position ", position, " (start from initial_state())");
  const index_t slot = window > 0 ? position % window : 0;
  if (position < window) {
    cache.local_keys.resize(static_cast<std::size_t>((position + 1) * local));
    cache.local_values.resize(cache.local_keys.size());
  }
  for (index_t h = 0; h < heads; ++h) {
    const T* key = k + h * head_dim;
    const T* value = v + h * head_dim;
    if (is_local(h)) {
      std::copy_n(key, head_dim, cache.local_keys.data() + slot * local + column[h]);
      std::copy_n(value, head_dim, cache.local_values.data() + slot * local + column[h]);
    }
  }
  const std::size_t old_rows = cache.global_keys.size();
  cache.global_keys.resize(old_rows + static_cast<std::size_t>(global));
  cache.global_values.resize(old_rows + static_cast<std::size_t>(global));
  for (index_t h = 0; h < heads; ++h) {
    if (is_local(h)) continue;
    std::copy_n(k + h * head_dim, head_dim, cache.global_keys.data() + old_rows + column[h]);
    std::copy_n(v + h * head_dim, head_dim, cache.global_values.data() + old_rows + column[h]);
  }
  // Slots fill in order, so a local query sees slots 0 … min(position + 1, window) − 1 (in ring
  // order: the softmax does not care); a global query sees rows 0 … position.
  std::atomic<bool> overflowed{false};
  cpu_detail::parallel_for(heads, threads, [&](index_t h) {
    using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;
    const bool local_head = is_local(h);
    const T* keys = (local_head ? cache.local_keys.data() : cache.global_keys.data()) + column[h];
    const T* values = (local_head ? cache.local_values.data() : cache.global_values.data()) + column[h];
    const index_t stride = local_head ? local : global;
    const index_t rows = local_head ? std::min(position + 1, window) : position + 1;
    thread_local Vector scores;
    scores.noalias() = cpu_detail::matrix(keys, rows, head_dim, stride) *
                       Eigen::Map<const Vector>(q + h * head_dim, head_dim);
    scores *= T(1) / std::sqrt(static_cast<T>(head_dim));
    const T largest = scores.maxCoeff();
    if (!std::isfinite(largest)) {
      overflowed = true;
      return;
    }
    scores = (scores.array() - largest).exp();
    scores /= scores.sum();
    Eigen::Map<Vector>(context + h * head_dim, head_dim).noalias() =
        cpu_detail::matrix(values, rows, head_dim, stride).transpose() * scores;
  });
  if (overflowed) throw non_finite("lsattn: decoding step: non-finite attention scores (float overflow)");
}

}  // namespace lsattn::detail
